"""The class-data archive's bookkeeping: what it fits, when it is whole, what a JVM said of it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sparkgate.spark.cds import DYNAMIC_ARCHIVE_MAGIC as MAGIC
from sparkgate.spark.cds import ClassDataArchive, archive_key, cds_problem


def spark_home(tmp_path: Path) -> Path:
    jars = tmp_path / "spark" / "jars"
    jars.mkdir(parents=True)
    (jars / "spark-core_2.13-4.1.4.jar").write_bytes(b"core")
    return tmp_path / "spark"


def test_another_spark_java_or_heap_gets_an_archive_of_its_own(tmp_path: Path) -> None:
    home = spark_home(tmp_path)
    java = tmp_path / "java"
    java.mkdir()
    (java / "release").write_text('JAVA_VERSION="17.0.15"\n')
    key = archive_key(home, java, ["2g"])
    assert archive_key(home, java, ["2g"]) == key
    assert archive_key(home, java, ["4g"]) != key
    (java / "release").write_text('JAVA_VERSION="17.0.16"\n')
    assert archive_key(home, java, ["2g"]) != key
    (home / "jars" / "extra.jar").write_bytes(b"x")
    assert archive_key(home, java, ["2g"]) != archive_key(home, None, ["2g"])


def test_an_archive_is_ready_only_whole(tmp_path: Path) -> None:
    archive = ClassDataArchive(tmp_path / "a.jsa")
    assert not archive.ready() and archive.java_options() == []
    built = archive.training_target()
    built.write_bytes(MAGIC + b"\x01" * (2 << 20))
    assert archive.adopt(built) and not built.exists()
    assert archive.ready()
    assert archive.java_options() == [f"-XX:SharedArchiveFile={archive.path}"]
    # Changed in place, same size: read again, and found damaged.
    with open(archive.path, "r+b") as f:
        f.write(b"\x02")
    os.utime(archive.path, ns=(1, 1))
    assert not archive.ready() and not archive.path.exists()
    built = archive.training_target()
    built.write_bytes(MAGIC + b"\x01" * (2 << 20))
    assert archive.adopt(built) and archive.ready()
    # Truncated (a JVM given this one dies of SIGBUS): never handed out, and removed.
    with open(archive.path, "r+b") as f:
        f.truncate(1 << 20)
    assert not archive.ready()
    assert not archive.path.exists() and not archive.checksum_path.exists()


def test_a_training_run_that_wrote_nothing_is_not_adopted(tmp_path: Path) -> None:
    archive = ClassDataArchive(tmp_path / "a.jsa")
    assert not archive.adopt(archive.training_target())  # no file
    small = archive.training_target()
    small.write_bytes(b"tiny")
    assert not archive.adopt(small) and not small.exists()
    cut = archive.training_target()  # a JVM killed while it wrote (the header comes last)
    cut.write_bytes(b"\x00" * (2 << 20))
    assert not archive.adopt(cut) and not cut.exists()
    assert not archive.ready()


def test_leftovers_of_interrupted_runs_are_swept(tmp_path: Path) -> None:
    archive = ClassDataArchive(tmp_path / "a.jsa")
    old, new = archive.training_target(), archive.training_target()
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (1, 1))
    archive.sweep()
    assert not old.exists() and new.exists()


def test_what_the_jvm_says_when_it_cannot_use_the_archive() -> None:
    # (Java 17, an archive with damaged regions)
    log = (
        "[0.082s][warning][cds,dynamic] Unable to use shared archive. The top archive failed to load: /x.jsa\n"
        "26/12/05 07:12:50 INFO SparkContext: Running Spark version 4.1.4\n"
    )
    assert cds_problem(log) == "Unable to use shared archive. The top archive failed to load: /x.jsa"
    assert cds_problem("[0.1s][warning][cds] The shared archive file has a bad magic number: 0\n")
    # What a training run prints about classes it leaves out is not a problem of a driver's archive.
    assert cds_problem("[15.6s][warning][cds] Preload Warning: Verification failed for org.apache.ivy.X\n") == ""
    assert cds_problem("26/12/05 INFO SharedState: Warehouse path is 'file:/tmp/spark-warehouse'.\n") == ""


def test_archives_of_another_spark_unused_for_a_month_are_swept(tmp_path: Path) -> None:
    def built(name: str) -> ClassDataArchive:
        archive = ClassDataArchive(tmp_path / name)
        target = archive.training_target()
        target.write_bytes(MAGIC + b"\x01" * (2 << 20))
        assert archive.adopt(target)
        return archive

    current, recent, old = built("spark-driver-a.jsa"), built("spark-driver-b.jsa"), built("spark-driver-c.jsa")
    month_ago = time.time() - 31 * 24 * 3600
    for archive in (current, old):
        os.utime(archive.checksum_path, (month_ago, month_ago))
    os.utime(recent.checksum_path, (time.time() - 3 * 24 * 3600,) * 2)
    current.sweep()
    assert current.ready()  # its own archive stays, however long unused
    assert recent.ready()  # used three days ago
    assert not old.path.exists() and not old.checksum_path.exists()


def test_a_driver_start_records_the_archives_use(tmp_path: Path) -> None:
    archive = ClassDataArchive(tmp_path / "spark-driver-a.jsa")
    target = archive.training_target()
    target.write_bytes(MAGIC + b"\x01" * (2 << 20))
    assert archive.adopt(target)
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(archive.checksum_path, (week_ago, week_ago))
    assert archive.java_options()
    assert archive.checksum_path.stat().st_mtime > week_ago + 24 * 3600
    assert archive.ready()  # (its checksum still matches the file)


def test_leftovers_of_other_archives_training_runs_are_swept_too(tmp_path: Path) -> None:
    mine, other = ClassDataArchive(tmp_path / "spark-driver-a.jsa"), ClassDataArchive(tmp_path / "spark-driver-b.jsa")
    left, running = other.training_target(), other.training_target()
    left.write_bytes(b"x")
    running.write_bytes(b"x")
    os.utime(left, (1, 1))
    mine.sweep()
    assert not left.exists() and running.exists()  # (a run under way is minutes old at most)
