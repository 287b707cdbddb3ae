"""The images' Dockerfiles (deploy/docker), read without building them: each parses, pins its
base images, runs as a non-root user, copies only what the repository has (and its
.dockerignore sends), and agrees with the settings and the chart that name its paths."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparkgate.config import KubernetesJobSettings, KubernetesPodSettings, KubernetesSettings
from sparkgate.spark import plugin

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
CHART = ROOT / "deploy" / "helm" / "sparkgate"
DOCKERFILES = ("gateway.Dockerfile", "driver.Dockerfile")
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
#: A release tag (x.y.z, with a variant after it; Debian's point releases are x.y), or a digest.
PINNED = re.compile(
    r"^([\w./-]+(:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?|@sha256:[0-9a-f]{64})"
    r"|debian:\d+\.\d+(-slim)?(@sha256:[0-9a-f]{64})?)$"
)
#: The Python of each Debian release the images are built on.
DEBIAN_PYTHON = {"12": (3, 11)}


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: str

    def words(self) -> list[str]:
        return json.loads(self.args) if self.args.startswith("[") else shlex.split(self.args)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: comments dropped, continued lines joined, flags (--from=...) split off."""
    stages: list[Stage] = []
    logical, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the file ends inside a continued line"
    for line in filter(str.strip, logical):
        keyword, _, rest = line.strip().partition(" ")
        assert keyword.upper() == keyword and keyword in INSTRUCTIONS, f"not an instruction: {line!r}"
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        if keyword in ("CMD", "ENTRYPOINT") or (keyword in ("RUN", "SHELL") and rest.startswith("[")):
            assert isinstance(json.loads(rest), list), f"{keyword} in exec form is a JSON list"
        instruction = Instruction(keyword, flags, rest)
        if keyword == "FROM":
            words = rest.split()
            assert len(words) in (1, 3) and (len(words) == 1 or words[1].upper() == "AS"), line
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append(instruction)
    return stages


def stages_of(name: str) -> list[Stage]:
    return parse((DOCKER / name).read_text())


def sent_to_the_builder(dockerfile: str, source: str) -> bool:
    """Whether the build context holds ``source``: "<Dockerfile>.dockerignore" (BuildKit) excludes
    everything, then lets paths back in with "!"."""
    rules = [r.strip() for r in (DOCKER / f"{dockerfile}.dockerignore").read_text().splitlines()]
    rules = [r for r in rules if r and not r.startswith("#")]
    assert rules[0] == "*", "everything is excluded first: only what is named is sent"
    source = source.rstrip("/")
    included = False
    for rule in rules[1:]:
        negated, pattern = rule.startswith("!"), rule.removeprefix("!").rstrip("/")
        if source == pattern or source.startswith(pattern + "/") or fnmatch.fnmatch(source, pattern):
            included = negated
    return included


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("python:3.11.14-slim-bookworm", True),
        ("apache/spark:4.1.4-scala2.13-java17-ubuntu", True),
        ("debian:12.11-slim", True),
        ("debian:bookworm-slim", False),
        ("redis@sha256:" + "0" * 64, True),
        ("python:3.11-slim", False),
        ("python:latest", False),
        ("python", False),
    ],
)
def test_pinned_means_a_release_or_a_digest(image: str, pinned: bool) -> None:
    assert bool(PINNED.match(image)) is pinned


@pytest.mark.parametrize("name", DOCKERFILES)
def test_it_parses_and_pins_every_base_image(name: str) -> None:
    stages = stages_of(name)
    names: set[str] = set()
    for stage in stages:
        if stage.base not in names:
            assert PINNED.match(stage.base), f"{stage.base}: pin a release (x.y.z) or a digest"
            assert ":latest" not in stage.base
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                assert copy.flags["from"] in names, f"COPY --from={copy.flags['from']}: an earlier stage"
        for run in stage.all("RUN"):
            mounted = re.search(r"from=([\w-]+)", run.flags.get("mount", ""))
            if mounted:
                assert mounted[1] in names, f"RUN --mount from={mounted[1]}: an earlier stage"
        if stage.name:
            names.add(stage.name)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_image_runs_as_a_numeric_non_root_user(name: str) -> None:
    final = stages_of(name)[-1]
    users = final.all("USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].args.partition(":")
    # Numeric: Kubernetes checks runAsNonRoot against the image's UID without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert final.all("ENTRYPOINT"), "the image says what it runs"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_it_copies_what_the_repository_has(name: str) -> None:
    for stage in stages_of(name):
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                continue
            *sources, _destination = copy.words()
            for source in sources:
                assert list(ROOT.glob(source.rstrip("/"))), f"{name}: COPY {source}: not in the repository"
                assert sent_to_the_builder(name, source), f"{name}: COPY {source}: left out by its .dockerignore"


def test_the_gateway_image_installs_sparkgate_with_what_kubernetes_needs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    stages = stages_of("gateway.Dockerfile")
    runs = " ".join(run.args for stage in stages for run in stage.all("RUN"))
    extras = re.search(r'"/src\[([\w,]+)\]"', runs)
    assert extras is not None and set(extras[1].split(",")) == {"kubernetes", "postgres"}
    assert set(extras[1].split(",")) <= set(pyproject["project"]["optional-dependencies"])
    # No Spark distribution: the gateway relays bytes; jobs need only the Spark Connect client.
    assert "pyspark-client==" in runs and "pyspark[" not in runs and "jre" not in runs and "jdk" not in runs
    final = stages[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.words() == ["sparkgate"] and "sparkgate" in pyproject["project"]["scripts"]
    # Python the package supports: the base release's.
    assert debian_python(final.base) >= requires_python(pyproject)


def debian_python(base: str) -> tuple[int, int]:
    m = re.fullmatch(r"debian:(\d+)\.\d+-slim", base)
    assert m is not None, f"{base}: a Debian point release"
    return DEBIAN_PYTHON[m[1]]


def requires_python(pyproject: dict[str, Any]) -> tuple[int, int]:
    major, minor = pyproject["project"]["requires-python"].removeprefix(">=").split(".")[:2]
    return int(major), int(minor)


def test_the_gateway_image_exposes_the_ports_the_chart_uses() -> None:
    (expose,) = stages_of("gateway.Dockerfile")[-1].all("EXPOSE")
    assert {int(p) for p in expose.words()} == {15002, 9090, 50051, 8080}


def test_the_driver_image_is_where_the_settings_look() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pyspark,) = pyproject["project"]["optional-dependencies"]["spark"]
    spark_version = pyspark.partition("==")[2]
    stages = stages_of("driver.Dockerfile")
    runs = " ".join(run.args for stage in stages for run in stage.all("RUN"))
    # The same Spark as local drivers (the pyspark wheel, through sparkgate's `spark` extra), the
    # pod settings' image, the batch jobs' image and the chart's.
    assert '[spark]"' in runs and "pyspark==" not in runs
    assert KubernetesPodSettings().image.endswith(f":{spark_version}")
    assert KubernetesJobSettings().images == {"default": KubernetesPodSettings().image}
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart_values["driver"]["image"]["tag"] == spark_version
    assert debian_python(stages[0].base) >= requires_python(pyproject)
    final = stages[-1]
    env = " ".join(e.args for e in final.all("ENV") + next(s for s in stages if s.name == "spark").all("ENV"))
    assert "SPARK_HOME=/opt/spark" in env
    # The job program where a SparkApplication's mainApplicationFile points.
    program = KubernetesJobSettings().main_file.removeprefix("local://")
    copies = [c.words() for c in final.all("COPY") if "from" not in c.flags]
    assert ["src/sparkgate/runner/program.py", program] in copies
    # The driver plugin: built from every source sparkgate builds it from, where driver Pods load it.
    plugin_stage = next(s for s in stages if s.name == "plugin")
    (plugin_copy,) = plugin_stage.all("COPY")
    plugin_dir = plugin_copy.words()[0].rstrip("/")
    assert {src.relative_to(ROOT).as_posix() for src in plugin.SOURCES} == {
        p.relative_to(ROOT).as_posix() for p in (ROOT / plugin_dir).glob("*.java")
    }
    (jar_copy,) = [c.words() for c in final.all("COPY") if c.flags.get("from") == "plugin"]
    assert jar_copy[-1] == KubernetesSettings().plugin_jar.removeprefix("local://")
    # The entrypoint Spark on Kubernetes expects: executors and operator drivers start through it.
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.words() == ["/opt/entrypoint.sh"]
    assert ["deploy/docker/spark-entrypoint.sh", "/opt/entrypoint.sh"] in copies


def test_the_readme_names_both_images() -> None:
    text = (DOCKER / "README.md").read_text()
    for name in DOCKERFILES:
        assert name in text
