"""The images of deploy/docker built here, as ``docker build`` would build them, without a Docker
engine or Docker Hub: buildah (Debian's) runs each Dockerfile, and the Debian base image they
name is made with debootstrap from Debian's archive, tagged with that name.

What differs from an image built by Docker: the base is a minimal debootstrap of the same Debian
release (the ``-slim`` image trims documentation and locales; both have the release's packages),
and the machine's own certificate authorities are added to it, so that pip and apt work behind
this machine's HTTPS proxy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
#: Debian releases by version, for the base images the Dockerfiles name (debian:12.x-slim).
DEBIAN_RELEASES = {"12": "bookworm"}
MIRROR = os.environ.get("SPARKGATE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def available() -> str:
    """Why images cannot be built here ("" when they can)."""
    if os.geteuid() != 0:
        return "building images needs root (buildah's chroot isolation, debootstrap)"
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    return f"not installed: {', '.join(missing)} (scripts/test installs them)" if missing else ""


def base_images(dockerfile: Path) -> set[str]:
    """The images a Dockerfile builds FROM that are not its own stages."""
    stages: set[str] = set()
    bases: set[str] = set()
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            if words[1] not in stages:
                bases.add(words[1])
            if len(words) == 4:
                stages.add(words[3])
    return bases


class Builder:
    """buildah with a storage of its own under ``root`` (removed by :meth:`close`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        driver = "vfs" if _filesystem(root) == "overlayfs" else "overlay"
        self.buildah = (
            "buildah",
            "--root",
            str(root / "storage"),
            "--runroot",
            str(root / "run"),
            "--storage-driver",
            driver,
        )

    def __call__(self, *args: str, log: Path | None = None, timeout: float = 900) -> str:
        with open(log or os.devnull, "ab") as out:
            done = subprocess.run(
                [*self.buildah, *args],
                stdout=subprocess.PIPE,
                stderr=out if log else subprocess.PIPE,
                timeout=timeout,
                check=False,
            )
        if done.returncode != 0:
            detail = _tail(log) if log else done.stderr.decode(errors="replace")
            raise AssertionError(f"buildah {' '.join(args[:3])} failed ({done.returncode}):\n{detail}")
        return done.stdout.decode().strip()

    def debian(self, image: str) -> None:
        """``image`` (``debian:<version>-slim``) made from Debian's archive."""
        m = re.fullmatch(r"(?:docker\.io/library/)?debian:(\d+)(?:\.\d+)?-slim", image)
        assert m and m[1] in DEBIAN_RELEASES, f"{image}: not a Debian base this helper can make"
        rootfs = self.root / f"rootfs-{m[1]}"
        log = self.root / "debootstrap.log"
        with open(log, "ab") as out:
            done = subprocess.run(
                ["debootstrap", "--variant=minbase", DEBIAN_RELEASES[m[1]], str(rootfs), MIRROR],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
                check=False,
            )
        assert done.returncode == 0, f"debootstrap failed:\n{_tail(log)}"
        # This machine's certificate authorities (an HTTPS proxy's among them): kept by
        # update-ca-certificates when a build installs ca-certificates; pip told to use them.
        local_cas = Path("/usr/local/share/ca-certificates")
        if local_cas.is_dir():
            shutil.copytree(local_cas, rootfs / "usr/local/share/ca-certificates", dirs_exist_ok=True)
        (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        container = self("from", "scratch")
        mount = Path(self("mount", container))
        subprocess.run(["cp", "-a", f"{rootfs}/.", f"{mount}/"], check=True)
        self("umount", container)
        self("commit", "--quiet", container, image)
        self("rm", container)
        shutil.rmtree(rootfs)

    def build(self, dockerfile: str, tag: str) -> None:
        """``docker build -f deploy/docker/<dockerfile> -t <tag> .`` from the repository's root."""
        for base in base_images(DOCKER / dockerfile):
            if not self("images", "--quiet", "--filter", f"reference={base}"):
                self.debian(base)
        log = self.root / f"{dockerfile}.log"
        self(
            "build",
            "--isolation",
            "chroot",
            "--pull=never",
            "--network",
            "host",
            "--layers",
            "-f",
            str(DOCKER / dockerfile),
            "-t",
            tag,
            str(ROOT),
            log=log,
            timeout=1800,
        )

    def working_container(self, image: str) -> str:
        return self("from", "--pull=never", image)

    def run(self, container: str, *argv: str, options: tuple[str, ...] = (), timeout: float = 300) -> str:
        """``buildah run`` (the image's user, the host's network, a host name that resolves to
        127.0.0.1): its output, or an AssertionError."""
        hosts = self.root / "hosts"
        hosts.write_text("127.0.0.1\tlocalhost sparkgate-test\n")
        own = ("--hostname", "sparkgate-test", "--no-hosts", "--volume", f"{hosts}:/etc/hosts:ro")
        done = subprocess.run(
            [
                *self.buildah,
                "run",
                "--isolation",
                "chroot",
                "--network",
                "host",
                *own,
                *options,
                container,
                "--",
                *argv,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        out = done.stdout.decode(errors="replace")
        assert done.returncode == 0, f"{' '.join(argv)} exited with {done.returncode}:\n{out[-6000:]}"
        return out

    def running(self) -> list[int]:
        """Processes still running in a container of this storage (their root is under it)."""
        storage = str(self.root.resolve())
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if os.readlink(proc / "root").startswith(storage):
                        pids.append(int(proc.name))
                except OSError:
                    continue
        return pids

    def close(self, *, keep_images: bool = False) -> None:
        """Working containers removed; the storage too, unless ``keep_images`` (a later run's build
        then starts from its cached layers). Processes left in them are killed first."""
        for pid in self.running():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run([*self.buildah, "rm", "--all"], capture_output=True, check=False)
        subprocess.run([*self.buildah, "umount", "--all"], capture_output=True, check=False)
        if not keep_images:
            shutil.rmtree(self.root, ignore_errors=True)


def _filesystem(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _tail(log: Path | None, lines: int = 60) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
