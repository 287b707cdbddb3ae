"""Catalogs on local drivers: sparkgate's path catalog plugin and the conf that mounts a catalog.

Each environment names its catalog (``environments.<env>.catalog``, see :class:`CatalogSettings`);
a driver mounts its profile's. Production names Unity Catalog (``io.unitycatalog.spark.UCSingleCatalog``),
whose jars come from Maven. Locally only the pyspark wheel's jars exist, so sparkgate ships a small
catalog plugin (``catalog_java/PathCatalog.java``, see ``docs/design/local-catalog.md``): tables
are Parquet directories under one root, read and written by Spark's own V2 ``ParquetTable``. The
same jar holds ``EagerCatalogs``, a session extension that loads every configured catalog when a
session runs its first statement, so ``SHOW CATALOGS`` lists them at once (Spark loads catalogs on
first use). :func:`catalog_jar` compiles both with ``javac`` once (cached by source hash);
:func:`prepare_catalog` builds the jar, writes the sample tables and returns the driver's conf.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from sparkgate.config import CatalogSettings
from sparkgate.errors import ConfigError
from sparkgate.sampledata import write_pedregal_catalog

log = logging.getLogger(__name__)

SOURCES = sorted((Path(__file__).with_name("catalog_java")).glob("*.java"))
#: The session extension (``spark.sql.extensions``) in the same jar: configured catalogs load with
#: a session's first statement instead of its first use of them.
EXTENSION_CLASS = "io.sparkgate.catalog.EagerCatalogs"


def catalog_jar(spark_home: Path, cache_dir: Path) -> Path:
    """The compiled catalog plugin (built with javac on first use; raises ConfigError without a JDK)."""
    digest = hashlib.sha256(b"".join(src.read_bytes() for src in SOURCES)).hexdigest()[:12]
    jar = cache_dir / f"sparkgate-catalog-{digest}.jar"
    if jar.is_file():
        return jar
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar_tool is None:
        raise ConfigError(
            "the local catalog needs a JDK to build its plugin (javac and jar not found): "
            "apt-get install openjdk-17-jdk-headless, or set environments.<env>.catalog.enabled: false"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sparkgate-catalog-") as tmp:
        out = subprocess.run(
            [javac, "-nowarn", "-cp", str(spark_home / "jars" / "*"), "-d", tmp, *(str(src) for src in SOURCES)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if out.returncode != 0:
            raise ConfigError(f"building the local catalog plugin failed:\n{out.stderr[-2000:]}")
        partial = jar.with_suffix(".tmp")
        subprocess.run([jar_tool, "cf", str(partial), "-C", tmp, "."], check=True, timeout=120)
        partial.replace(jar)
    log.info("built the local catalog plugin %s", jar)
    return jar


def prepare_catalog(catalog: CatalogSettings, spark_home: Path, state_dir: Path) -> dict[str, str]:
    """The Spark conf that mounts ``catalog`` on a local driver (blocking: may run javac and write
    the sample tables). Without a JDK a path catalog is left out and other catalogs are mounted
    without the eager loading, with a warning either way."""
    if not catalog.enabled:
        return {}
    try:
        jar: Path | None = catalog_jar(spark_home, state_dir / "catalog")
    except ConfigError as exc:
        if catalog.is_path_catalog:
            log.warning("local drivers start without the %s catalog: %s", catalog.name, exc.message)
            return {}
        log.warning("SHOW CATALOGS lists %s only once a session used it: %s", catalog.name, exc.message)
        jar = None
    root = None
    if catalog.is_path_catalog:
        root = state_dir / (catalog.root or f"catalog/{catalog.name}")
        if catalog.sample_data:
            tables = write_pedregal_catalog(root)
            if tables:
                log.info("wrote sample tables into %s (%s): %s", catalog.name, root, _counts(tables))
    conf = catalog.spark_conf(root)
    if jar is not None:
        conf |= {"spark.jars": str(jar), "spark.sql.extensions": EXTENSION_CLASS}
    return conf


def _counts(tables: dict[str, int]) -> str:
    return ", ".join(f"{k} ({v} rows)" for k, v in tables.items())
