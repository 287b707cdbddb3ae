"""The README, run as written.

A fresh copy of the repository (the files git knows, no state) stands in for a new user's clone and
a virtual environment on top of this one for their Python. In it the README's first command runs
exactly as shown — ``pip install -e '.[spark]' && sparkgate up``: the default configuration, the
default ports, the relative default state dir — and then every example the README shows runs
against that platform, in the README's order, from the clone's directory, and its output is
checked against the output the README shows. Last, Ctrl-C: everything stops and no process of the
platform is left.

Every fenced block of the README carries a marker on the line before it,
``<!-- readme-test: NAME -->``, naming what runs it here, or ``<!-- readme-test: skip: why -->``.
A block without one, or a marker nothing here knows, fails :func:`test_every_readme_block_is_run`,
so the README and this test cannot drift apart. ``text`` blocks without a marker are pictures; with
one, they are output the README promises.

Output samples match line by line, in order (:func:`expect_lines`): ``...`` or ``…`` stands for
anything, numbers, times and hex ids may differ, and ``/home/me/sparkgate`` — where the README's
samples have the clone — is the fresh copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Where the README's output samples have the user's clone.
EXAMPLE_CLONE = "/home/me/sparkgate"
#: ``sparkgate up``'s listeners on their default ports.
DEFAULT_PORTS = {15002: "gateway", 50051: "runner", 8080: "playground", 9090: "admin"}
SKIP = "skip"

_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
_MARK = re.compile(r"^<!--\s*readme-test:\s*(?P<name>[\w-]+)(?::\s*(?P<why>.*?))?\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced block of the README."""

    lang: str
    text: str
    #: Line of its opening fence (1-based).
    line: int
    #: Its marker's name (None: no marker), and for ``skip`` the reason.
    name: str | None
    why: str = ""


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    mark: re.Match[str] | None = None
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            if lines[i].strip():
                mark = _MARK.match(lines[i])
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        name, why = (mark.group("name"), mark.group("why") or "") if mark else (None, "")
        blocks.append(Block(fence.group("lang"), "\n".join(lines[start + 1 : i]) + "\n", start + 1, name, why))
        mark = None
        i += 1
    return blocks


def block(name: str) -> Block:
    found = [b for b in readme_blocks(README.read_text()) if b.name == name]
    assert len(found) == 1, f"README.md has {len(found)} blocks marked readme-test: {name}"
    return found[0]


#: Every marker a test here runs (``skip`` aside).
RUN_HERE = {
    "two-commands",
    "up-output",
    "ha",
    "connect",
    "get-spark",
    "pytest-file",
    "pytest-run",
    "metaflow",
    "java",
    "catalog",
    "catalog-config",
    "submit",
    "submit-output",
    "manifest",
    "job-commands",
    "playground-curl",
    "security-setup",
    "configuration",
}


def test_every_readme_block_is_run() -> None:
    text = README.read_text()
    # Only fences this test reads may appear: ``` at the start of a line.
    problems = [
        f"README.md:{i}: a fence this test does not read (use ``` at the start of the line)"
        for i, line in enumerate(text.splitlines(), 1)
        if line.lstrip().startswith(("```", "~~~")) and not line.startswith("```")
    ]
    for b in readme_blocks(text):
        where = f"README.md:{b.line} ({b.lang or 'no language'})"
        if b.name is None:
            if b.lang != "text":
                problems.append(f"{where}: no <!-- readme-test: NAME --> marker")
        elif b.name == SKIP:
            if not b.why:
                problems.append(f"{where}: a skip needs its reason (<!-- readme-test: skip: why -->)")
        elif b.name not in RUN_HERE:
            problems.append(f"{where}: no test runs readme-test: {b.name}")
    names = [b.name for b in readme_blocks(README.read_text()) if b.name not in (None, SKIP)]
    problems += [
        f"readme-test: {n} marks more than one block" for n in sorted({n for n in names if names.count(n) > 1})
    ]
    problems += [f"readme-test: {n} marks no block" for n in sorted(RUN_HERE - set(names))]
    assert not problems, "\n".join(problems)


def test_block_markers_and_output_patterns() -> None:
    text = "intro\n<!-- readme-test: one -->\n```bash\necho hi\n```\n\n```text\npicture\n```\n"
    text += "<!-- readme-test: skip: because -->\n\n```python\nx = 1\n```\n"
    blocks = readme_blocks(text)
    assert [(b.name, b.lang, b.text, b.why) for b in blocks] == [
        ("one", "bash", "echo hi\n", ""),
        (None, "text", "picture\n", ""),
        ("skip", "python", "x = 1\n", "because"),
    ]
    expect_lines(
        "job feature-engineering-daily-1795  (namespace sjns-a-4813494d)\n...\n  warm    1/1 ready (  11s)\n",
        "noise\njob feature-engineering-daily-42  (namespace sjns-a-8c2a47d3)\nmore\nwarm 0/1 ready (0s)\n",
        Path("/x"),
    )
    with pytest.raises(AssertionError, match="not in the output"):
        expect_lines("state COMPLETED\n", "state FAILED\n", Path("/x"))
    with pytest.raises(AssertionError, match="not in the output"):  # in order
        expect_lines("b\na\n", "a\nb\n", Path("/x"))
    expect_lines(f"log in {EXAMPLE_CLONE}/.sparkgate (…)\n", "log in /tmp/c/.sparkgate (x)\n", Path("/tmp/c"))


# -- matching output ------------------------------------------------------------------------------

_VARIABLE = re.compile(r"(\s+|[0-9a-f]*[0-9][0-9a-f]*)")


def _line_pattern(line: str) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"\.\.\.|…", line):
        out = []
        for token in _VARIABLE.split(piece):
            if not token:
                continue
            if token.isspace():
                out.append(r"\s*")
            elif _VARIABLE.fullmatch(token):
                out.append(r"[0-9a-f]*[0-9][0-9a-f]*" if any(c.isalpha() for c in token) else r"[0-9]+")
            else:
                out.append(re.escape(token))
        parts.append("".join(out))
    return re.compile(".*".join(parts))


def expect_lines(expected: str, actual: str, clone: Path) -> None:
    """Each line of ``expected`` matches a line of ``actual``, in order (see the module's doc)."""
    got = [ln.strip() for ln in actual.splitlines()]
    at = 0
    for want in (ln.strip() for ln in expected.splitlines()):
        if want in ("", "...", "…"):
            continue
        pattern = _line_pattern(want.replace(EXAMPLE_CLONE, str(clone)))
        for j in range(at, len(got)):
            if pattern.fullmatch(got[j]):
                at = j + 1
                break
        else:
            raise AssertionError(f"README line {want!r} is not in the output (in order):\n{actual[-4000:]}")


# -- the fresh clone and its platform ---------------------------------------------------------------


def _copy_repository(to: Path) -> None:
    """The files a clone has: those git tracks or would add (no state, no caches)."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        for rel in filter(None, listed.decode().split("\0")):
            src = ROOT / rel
            if src.is_file() and not _users_own(rel):
                (to / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, to / rel)
    else:
        ignore = shutil.ignore_patterns(
            ".git", ".sparkgate", "sparkgate.yaml", "__pycache__", "*.egg-info", ".artifacts", ".venv"
        )
        shutil.copytree(ROOT, to, ignore=ignore, dirs_exist_ok=True)


def _users_own(rel: str) -> bool:
    """A file a user makes in their clone (the README's security section writes sparkgate.yaml)."""
    return rel == "sparkgate.yaml" or rel.startswith(".sparkgate/")


def _ports_in_use() -> list[str]:
    busy = []
    for port, what in DEFAULT_PORTS.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0" if what == "gateway" else "127.0.0.1", port))
            except OSError:
                busy.append(f"{port} ({what})")
    return busy


def processes_of(clone: Path) -> list[str]:
    """Processes running in the clone or naming it: the platform, its drivers and jobs."""
    found = []
    mine = str(clone)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd == mine or cwd.startswith(mine + "/") or mine in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


class Clone:
    """A user's clone with ``sparkgate up`` running in it (started by the README's first command)."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "sparkgate"
        self.scratch = base / "scratch"
        self.project = base / "project"
        for d in (self.dir, self.scratch, self.project, base / "home"):
            d.mkdir(parents=True, exist_ok=True)
        _copy_repository(self.dir)
        venv = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
        own = ("SPARKGATE", "SPARK_CONNECT_", "PYSPARK_", "SPARK_HOME", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
        env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
        # A new login: its own home (no client config or token file of the developer's), a user name.
        env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), HOME=str(base / "home"))
        env.update(USER="me", LOGNAME="me", PYTHONUNBUFFERED="1")
        cache = Path.home() / ".cache" / "pip"
        if cache.is_dir():
            env["PIP_CACHE_DIR"] = str(cache)
        self.env = env
        self.log = base / "up.log"
        self.up: subprocess.Popen[bytes] | None = None

    def background(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        """``command`` in a shell in the clone, as in a terminal of its own, its output to ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen(
                ["bash", "-c", command],
                cwd=self.dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C goes to all of it
            )

    def start(self, command: str, timeout: float = 420) -> None:
        """Run the README's first command in a shell, as a terminal would, until the platform is ready."""
        self.up = self.background(command, self.log)
        deadline = time.monotonic() + timeout
        while "sparkgate is ready" not in self.output():
            if self.up.poll() is not None:
                raise AssertionError(f"`{command}` exited with {self.up.returncode}:\n{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"`{command}` was not ready after {timeout:.0f}s:\n{self.output()[-4000:]}")
            time.sleep(0.5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ctrl_c(self, timeout: float = 120) -> int:
        """What Ctrl-C in its terminal does: SIGINT to the foreground process group."""
        assert self.up is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.up.pid, signal.SIGINT)
        return self.up.wait(timeout)

    def kill(self) -> None:
        """After a failure: nothing of the platform may outlive the tests."""
        if self.up is not None and self.up.poll() is None:
            with contextlib.suppress(Exception):
                self.ctrl_c(60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.up.pid, signal.SIGKILL)
        for line in processes_of(self.dir):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)

    def sh(self, script: str, *, cwd: Path | None = None, timeout: float = 300) -> str:
        """``script`` in bash in the clone (or ``cwd``); its output (stdout and stderr)."""
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd or self.dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"`{script.strip()}` exited with {done.returncode}:\n{done.stdout[-4000:]}"
        return done.stdout

    def python(self, name: str, code: str, timeout: float = 300) -> str:
        """A README Python block saved as a script and run with the clone's Python, in the clone."""
        script = self.scratch / f"{name.replace('-', '_')}.py"
        script.write_text(code)
        return self.sh(f"python {script}", timeout=timeout)

    def load_config(self, name: str) -> str:
        """A README YAML block as a configuration file: what ``sparkgate config`` makes of it."""
        config = self.scratch / f"{name}.yaml"
        config.write_text(block(name).text)
        return self.sh(f"sparkgate config --config {config}")

    def audit(self) -> list[dict[str, str]]:
        path = self.dir / ".sparkgate" / "audit.log"
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    pytest.importorskip("pyspark", reason="the README's platform needs pyspark: pip install -e '.[spark]'")
    busy = _ports_in_use()
    if busy:
        pytest.fail(
            f"ports {', '.join(busy)} are in use: the README test runs `sparkgate up` on its default ports "
            "(stop the `sparkgate up` holding them)"
        )
    c = Clone(tmp_path_factory.mktemp("readme"))
    try:
        first = block("two-commands").text.splitlines()[0].split("#", 1)[0].strip()
        c.start(first)
        yield c
    finally:
        c.kill()


def _job_id(output: str) -> str:
    found = re.search(r"^submitted (\S+)", output, re.MULTILINE)
    assert found, f"no job id in:\n{output[-3000:]}"
    return found.group(1)


def _commands(text: str) -> list[tuple[str, str]]:
    """A bash block's commands (continuation lines joined), each with the comment after it."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        if line.lstrip().startswith("#") and not pending:
            if out:
                out[-1] = (out[-1][0], (out[-1][1] + "\n" + line.lstrip()[1:].strip()).strip())
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        command, _, comment = (pending + line).partition("  #")
        out.append((command.strip(), comment.strip()))
        pending = ""
    return out


# -- the README, top to bottom ----------------------------------------------------------------------

needs_spark = pytest.mark.spark


@needs_spark
def test_the_first_command_starts_the_platform(clone: Clone) -> None:
    out = clone.output()
    expect_lines(block("up-output").text, out, clone.dir)
    assert f"state in {clone.dir}/.sparkgate" in out
    # The second command is what CI runs.
    second = block("two-commands").text.splitlines()[1].split("#", 1)[0].strip()
    assert second == "scripts/test" and "scripts/test" in (clone.dir / ".ci" / "run").read_text()


@needs_spark
def test_connecting_both_ways(clone: Clone) -> None:
    before = len(clone.audit())
    out = clone.python("connect", block("connect").text)
    assert out.count("| ok|") == 2 and out.count("|  1|") == 2, out
    created = [e for e in clone.audit()[before:] if e["event"] == "session.create"]
    places = [(e["team"], e["environment"]) for e in created]
    assert places == [("feature-engineering", "staging"), ("feature-engineering", "prod")], created
    assert created[1]["who"] == "service-account"


@needs_spark
def test_get_spark(clone: Clone) -> None:
    text = block("get-spark").text
    out = clone.python("get-spark", text)
    said = re.search(r"# (Connected .*)$", text, re.MULTILINE)
    assert said, "the README shows what get_spark prints"
    expect_lines(said.group(1), out, clone.dir)
    assert "user me)" in out and "|  1|" in out


@needs_spark
def test_the_pytest_plugin(clone: Clone) -> None:
    test_file = block("pytest-file").text
    name = test_file.splitlines()[0].lstrip("# ").strip()
    (clone.project / name).write_text(test_file)
    [(command, expected)] = _commands(block("pytest-run").text)
    out = clone.sh(command, cwd=clone.project)
    assert expected and expected in out, out


@needs_spark
def test_the_metaflow_flow(clone: Clone) -> None:
    [(command, _)] = _commands(block("metaflow").text)
    out = clone.sh(command)
    assert "Feature engineering pipeline complete!" in out and "Connected to Spark" in out, out


@needs_spark
@pytest.mark.skipif(shutil.which("javac") is None, reason="needs a JDK (javac) to build the Java snippet")
def test_the_java_snippet(clone: Clone) -> None:
    from tests import java_client

    source = clone.scratch / "ReadmeSnippet.java"
    body = "\n".join("        " + ln for ln in block("java").text.splitlines())
    source.write_text(
        "import org.apache.spark.sql.SparkSession;\n\npublic class ReadmeSnippet {\n"
        f"    public static void main(String[] args) {{\n{body}\n        spark.stop();\n    }}\n}}\n"
    )
    java = java_client.build(source, clone.scratch)
    out = subprocess.run(java, env=clone.env, capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "|  1|" in out.stdout, out.stdout


@needs_spark
def test_the_catalog(clone: Clone) -> None:
    out = clone.python("catalog", block("catalog").text)
    assert "pedregal" in out and "spark_catalog" in out, out
    assert re.search(r"^\|\s*feature_store\|", out, re.MULTILINE) and re.search(r"^\|\s*raw\|", out, re.MULTILINE), out
    days = re.findall(r"^\|\d{4}-\d\d-\d\d\|", out, re.MULTILINE)
    assert len(days) >= 7, out
    assert re.search(r"^\|\s*scratch\|", out, re.MULTILINE), out
    assert (clone.dir / ".sparkgate" / "catalog" / "pedregal" / "scratch" / "mine").is_dir()


@needs_spark
def test_the_catalog_configuration_loads(clone: Clone) -> None:
    assert "io.unitycatalog.spark.UCSingleCatalog" in clone.load_config("catalog-config")


@needs_spark
def test_the_batch_example(clone: Clone) -> None:
    [(command, _)] = _commands(block("submit").text)
    out = clone.sh(command)
    expect_lines(block("submit-output").text, out, clone.dir)
    # Numbers are free in the sample (times, ids); the sample data's are not.
    assert "20 row(s), first 10 shown" in out and re.search(r"^20\s+Store 20\s+Austin\s+41\s+2909\.85", out, re.M)
    job = _job_id(out)
    assert (clone.dir / ".sparkgate" / "jobs" / job / "scratch" / "daily_orders").is_dir()


@needs_spark
def test_a_manifest_of_your_own_and_the_job_commands(clone: Clone) -> None:
    commands = _commands(block("job-commands").text)
    submit = commands[0][0]
    manifest = next(w for w in submit.split() if w.endswith(".yaml"))
    (clone.dir / manifest).write_text(block("manifest").text)
    out = clone.sh(submit)
    assert "COMPLETED: finished" in out and "row(s)" in out, out
    job = _job_id(out)
    outputs = {command: clone.sh(command.replace("<job_id>", job)) for command, _ in commands[1:]}
    for command, text in outputs.items():
        assert job in text or "row(s)" in text, f"{command}:\n{text}"
    status = next(t for c, t in outputs.items() if c.startswith("sparkgate status"))
    assert re.search(r"^state\s+COMPLETED", status, re.MULTILINE), status
    results = next(t for c, t in outputs.items() if c.startswith("sparkgate results"))
    assert re.search(r"^city\s+orders", results, re.MULTILINE), results


@needs_spark
def test_the_playground_api(clone: Clone) -> None:
    submit, *rest = _commands(block("playground-curl").text)
    out = clone.sh(submit[0])
    expect_lines(submit[1], out, clone.dir)
    job = json.loads(out)["job_id"]
    status_cmd, results_cmd = (c.replace("<job_id>", job) for c, _ in rest)
    deadline = time.monotonic() + 180
    while (state := json.loads(clone.sh(status_cmd))["state"]) not in ("COMPLETED", "FAILED", "CANCELLED"):
        assert time.monotonic() < deadline, f"job {job} still {state}"
        time.sleep(1)
    assert state == "COMPLETED", clone.sh(status_cmd + "?logs=true")
    results = json.loads(clone.sh(results_cmd))
    assert results["count"] == 20 and results["preview"][0]["city"] == "Austin", results


@needs_spark
def test_the_commands_table_and_gateway_status(clone: Clone) -> None:
    text = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    subcommands = sorted(set(re.findall(r"^\| `sparkgate ([a-z-]+)", text, re.MULTILINE)))
    assert {"up", "gateway", "status", "config", "certs", "submit", "playground"} <= set(subcommands)
    for sub in subcommands:
        assert "usage: sparkgate" in clone.sh(f"sparkgate {sub} --help")
    status = clone.sh("sparkgate status")
    assert "sjns-feature-engineering-local" in status and "(warm pool)" in status, status
    assert "class-data archive: ready" in status, status  # (tests/conftest.py built it for the run)


@needs_spark
def test_ctrl_c_stops_everything(clone: Clone) -> None:
    code = clone.ctrl_c()
    out = clone.output()
    assert code == 0, out[-3000:]
    assert re.search(r"sparkgate: stopped \(\d+ driver\(s\) shut down\)", out), out[-3000:]
    deadline = time.monotonic() + 10
    while (left := processes_of(clone.dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "\n".join(left)


#: What ``examples/ha/run`` listens on: Redis, haproxy, three gateways and their admin ports.
HA_PORTS = [6379, 15010, 15011, 15012, 15013, 9191, 9192, 9193]


@needs_spark
def test_several_gateways(clone: Clone) -> None:
    """The example of three replicas behind haproxy, once `sparkgate up` is stopped (it shares the
    state directory): a session through haproxy, every replica in the status, and Ctrl-C stops all
    of it, the drivers included."""
    busy = [port for port in HA_PORTS if _port_busy(port)]
    assert not busy, f"ports {busy} are in use: examples/ha/run needs them"
    (run, _), (status, _) = _commands(block("ha").text)
    log = clone.scratch / "ha.log"
    ha = clone.background(run, log)
    try:

        def shown() -> str:
            done = subprocess.run(
                ["bash", "-c", status], cwd=clone.dir, env=clone.env, capture_output=True, text=True, check=False
            )
            return done.stdout

        deadline = time.monotonic() + 240
        # Every replica announced, and the leader's warm driver known to the one asked.
        while not ("replicas 3 gateways" in (out := shown()) and "(warm pool)" in out and "leader" in out):
            assert ha.poll() is None, f"{run} exited with {ha.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready after 240 s:\n{out}\n{log.read_text()[-3000:]}"
            time.sleep(1)
        url = "sc://localhost:15010/;x-doordash-team=feature-engineering;x-doordash-environment=local"
        code = f"from pyspark.sql import SparkSession\ns = SparkSession.builder.remote({url!r}).getOrCreate()\n"
        code += "print('rows', s.range(7).count())\ns.stop()\n"
        assert "rows 7" in clone.python("ha-client", code)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ha.pid, signal.SIGINT)  # Ctrl-C
        try:
            ha.wait(120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(ha.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (left := processes_of(clone.dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "\n".join(left)  # the last gateway to leave stopped the driver


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


@needs_spark
def test_the_security_setup_up_to_starting(clone: Clone) -> None:
    """The block's last command starts the platform with an example OIDC issuer, which is not
    reachable here; up to it, everything runs, and `sparkgate config` loads what it wrote."""
    script = block("security-setup").text.rstrip()
    assert script.endswith("\nsparkgate up")
    clone.sh(script.removesuffix("sparkgate up") + "sparkgate config > /dev/null")
    certs = clone.dir / ".sparkgate" / "certs"
    assert all((certs / f).is_file() for f in ("ca.pem", "server.pem", "server-key.pem"))
    (clone.dir / "sparkgate.yaml").unlink()


@needs_spark
def test_the_configuration_reference_loads(clone: Clone) -> None:
    assert "state_dir:" in clone.load_config("configuration")
