"""Local drivers and their class-data archive (:mod:`sparkgate.spark.cds`), with real JVMs: drivers
start from it (the JVM maps it); a damaged one is never given to a JVM, which starts without it,
and it is built again."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from sparkgate.clusters.base import DriverSpec
from sparkgate.clusters.local import LocalProvider
from sparkgate.config import LocalProviderSettings
from sparkgate.spark.home import user_cache_dir

pytestmark = pytest.mark.spark


async def test_drivers_start_from_the_archive_and_never_from_a_damaged_one(tmp_path: Path) -> None:
    """The training run itself is the one the suite's drivers use (tests/conftest.py builds it
    as a gateway does); here, a copy of it."""
    settings = LocalProviderSettings(class_archive_dir=str(tmp_path / "archives"), client_warmup=False)
    async with LocalProvider(settings, tmp_path / "state") as provider:
        archive = await provider._class_archive()
        assert archive is not None
        built = user_cache_dir("class-archives") / archive.path.name
        if built.exists():  # (the suite's: copied with its checksum, times kept)
            archive.path.parent.mkdir(parents=True)
            for source in (built, built.with_name(built.name + ".sha256")):
                await asyncio.to_thread(shutil.copy2, source, archive.path.parent / source.name)
        else:  # (none built for the run: a first driver's training builds it)
            first = await provider.start_driver(DriverSpec())
            assert first.labels["class_archive"] == "no"  # none yet: the first start is not delayed
            assert (provider.class_archive_status() or {})["state"] == "building"
            assert await provider.class_archive_built()  # (in the background; here, waited for)
            await provider.stop_driver(first)
        assert provider.class_archive_status() == {"state": "ready", "path": str(archive.path)}

        second = await provider.start_driver(DriverSpec())
        assert second.labels["class_archive"] == "yes"  # the JVM mapped it
        log = await asyncio.to_thread(Path(second.log_path or "").read_text)
        assert "[cds" not in log  # and said nothing of it
        await provider.stop_driver(second)

        # Damaged (a JVM given it would die of SIGBUS).
        await asyncio.to_thread(os.truncate, archive.path, archive.path.stat().st_size // 2)
        third = await provider.start_driver(DriverSpec())
        assert third.labels["class_archive"] == "no"  # started, without it
        assert provider._training is not None  # and it is built again
        await provider.stop_driver(third)
