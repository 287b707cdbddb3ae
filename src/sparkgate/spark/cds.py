"""A class-data archive for Spark drivers: the JVM's class data sharing (CDS), so that a driver
maps the ~20,000 classes a Spark Connect server loads, already parsed and verified, instead of
loading them from the jars one by one. A cold driver then starts in about half the time.

The archive is made by a *training run*: a driver started with ``-XX:ArchiveClassesAtExit``
(the dynamic archive of Java 13 and later), warmed up as a real driver is, then stopped; the JVM
writes the classes it loaded when it exits. Later drivers start with ``-XX:SharedArchiveFile``.

An archive fits one Java build, one set of Spark jars and the JVM options that shape the heap
(a different one is refused by the JVM, or silently unused), so its file name is a digest of
those (:func:`archive_key`); another Spark or Java gets an archive of its own. A checksum written
beside it, checked before a driver is given it, keeps a damaged file from reaching a JVM; a driver
whose log says the JVM could not use it marks it broken (:func:`cds_problem`). A broken, missing
or stale archive only costs speed: drivers start without one, and one is built again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sparkgate.spark.home import jar_listing

log = logging.getLogger(__name__)

#: What the JVM prints when it cannot use the archive it was given (unified logging, ``cds`` tags).
_CDS_TROUBLE = re.compile(
    r"^\[[^\]]*\]\[(?:warning|error)\]\[cds[^\]]*\]\s*"
    r"(?P<what>.*(?:shared archive|archive file|top archive|base archive|unable to (?:use|map)|mismatch).*)$",
    re.IGNORECASE | re.MULTILINE,
)


#: An archive of another Java, Spark or heap that no driver here started from for this long is
#: removed by :meth:`ClassDataArchive.sweep` (each is ~200 MB; a JVM that maps one keeps it).
UNUSED_SECONDS = 30 * 24 * 3600
#: How often at most a driver's start records an archive's use.
_USE_RECORDED_EVERY = 3600

#: The first bytes of a dynamic archive (HotSpot's ``CDS_DYNAMIC_ARCHIVE_MAGIC``, little-endian).
DYNAMIC_ARCHIVE_MAGIC = bytes.fromhex("a8ab0bf0")


def java_home() -> Path | None:
    """The Java that Spark's scripts run: ``$JAVA_HOME``, else the ``java`` on the path."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    return Path(java).resolve().parents[1] if java else None


def archive_key(spark_home: Path, java: Path | None, options: Iterable[str]) -> str:
    """A digest of what an archive fits: the Java build (its ``release`` file and its JVM
    library), the Spark jars (name, size, time) and the JVM options that shape it."""
    h = hashlib.sha256()
    if java is not None:
        for name in ("release", "lib/server/libjvm.so"):
            with contextlib.suppress(OSError):
                st = (java / name).stat()
                h.update(f"{name} {st.st_size} {st.st_mtime_ns}\n".encode())
        with contextlib.suppress(OSError):
            h.update((java / "release").read_bytes())
    h.update(jar_listing(spark_home).encode())
    h.update("\n".join(options).encode())
    return h.hexdigest()[:20]


def cds_problem(driver_log: str) -> str:
    """Why a driver's JVM did not use its archive, from its log ("" when it did)."""
    m = _CDS_TROUBLE.search(driver_log)
    return m["what"].strip() if m else ""


@dataclass
class ClassDataArchive:
    """One archive file (``path``) and its checksum beside it (``path`` + ``.sha256``: the SHA-256
    of the file, and its size and modification time when it was taken)."""

    path: Path

    @classmethod
    def for_drivers(
        cls, directory: Path, spark_home: Path, options: Sequence[str] = (), java: Path | None = None
    ) -> ClassDataArchive:
        key = archive_key(spark_home, java if java is not None else java_home(), options)
        return cls(directory / f"spark-driver-{key}.jsa")

    def __post_init__(self) -> None:
        #: (size, mtime) of the file last found whole: checked again only when it changes.
        self._verified: tuple[int, int] | None = None

    @property
    def checksum_path(self) -> Path:
        return self.path.with_name(self.path.name + ".sha256")

    def ready(self) -> bool:
        """The archive is there and whole. Blocking: reads the whole file only when its size or
        time differs from those its checksum was taken at (a change in place, or a truncation)."""
        try:
            st = self.path.stat()
            digest, _, at = self.checksum_path.read_text().strip().partition(" ")
        except OSError:
            return False
        if at == f"{st.st_size} {st.st_mtime_ns}" or self._verified == (st.st_size, st.st_mtime_ns):
            return True
        try:
            whole = _sha256(self.path) == digest
        except OSError:  # (removed meanwhile, by another gateway)
            return False
        if not whole:
            log.warning("class-data archive %s is damaged (its checksum differs): not used", self.path)
            self.discard()
            return False
        self._verified = (st.st_size, st.st_mtime_ns)
        return True

    def java_options(self) -> list[str]:
        """What a driver starts with to use the archive (nothing when it is not ready). Records
        the use (the checksum file's time), which keeps it from :meth:`sweep`."""
        if not self.ready():
            return []
        with contextlib.suppress(OSError):
            if time.time() - self.checksum_path.stat().st_mtime > _USE_RECORDED_EVERY:
                os.utime(self.checksum_path)
        return [f"-XX:SharedArchiveFile={self.path}"]

    def training_target(self) -> Path:
        """Where a training run writes its archive (adopted by :meth:`adopt` once it exits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")

    def adopt(self, built: Path) -> bool:
        """Make ``built`` (a training run's output) the archive, with its checksum. False when
        the run wrote nothing usable."""
        try:
            if built.stat().st_size < 1024 * 1024:
                raise OSError("smaller than 1 MiB")
            with open(built, "rb") as f:
                if f.read(4) != DYNAMIC_ARCHIVE_MAGIC:  # (written last: a JVM cut short left none)
                    raise OSError("no archive header")
        except OSError as exc:
            log.warning("class-data training wrote no archive (%s): drivers start without one", exc)
            built.unlink(missing_ok=True)
            return False
        checksum = self.checksum_path.with_name(f"{self.checksum_path.name}.{uuid.uuid4().hex[:8]}.tmp")
        digest = _sha256(built)
        built.replace(self.path)  # the archive first: a checksum never names a file that is not there
        st = self.path.stat()
        checksum.write_text(f"{digest} {st.st_size} {st.st_mtime_ns}\n")
        checksum.replace(self.checksum_path)
        self._verified = None
        return True

    def discard(self) -> None:
        for path in (self.checksum_path, self.path):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        self._verified = None

    def sweep(self, older_than_seconds: float = 3600, unused_seconds: float = UNUSED_SECONDS) -> None:
        """Remove what interrupted training runs left (``*.tmp``, of any key, older than
        ``older_than_seconds``: a run takes well under a minute), and the archives of other keys
        (an earlier Spark or Java) no driver started from for ``unused_seconds``. (A JVM that maps
        a removed archive keeps its pages on a local file system, not on NFS.)"""
        now = time.time()
        for tmp in self.path.parent.glob("*.jsa.*.tmp"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > older_than_seconds:
                    tmp.unlink()
        for other in self.path.parent.glob("spark-driver-*.jsa"):
            if other == self.path:
                continue
            old = ClassDataArchive(other)
            with contextlib.suppress(OSError):
                used = (old.checksum_path if old.checksum_path.exists() else other).stat().st_mtime
                if now - used > unused_seconds:
                    log.info("removing class-data archive %s: unused for %d days", other, (now - used) // 86400)
                    old.discard()  # (its lock file stays: a gateway may hold it)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
