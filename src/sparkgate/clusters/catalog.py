"""The local ``pedregal`` catalog: a V2 catalog plugin shared by every local driver.

Production names its catalog in Unity Catalog (``io.unitycatalog.spark.UCSingleCatalog``), whose
jars come from Maven. Locally only the pyspark wheel's jars exist, so sparkgate ships a small
catalog plugin (``catalog_java/PathCatalog.java``, see ``docs/design/local-catalog.md``): tables
are Parquet directories under one root, read and written by Spark's own V2 ``ParquetTable``.
:func:`catalog_jar` compiles it with ``javac`` once (cached by source hash); :func:`catalog_conf`
is the Spark conf that mounts it as ``pedregal`` on a driver.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from sparkgate.errors import ConfigError

log = logging.getLogger(__name__)

SOURCES = sorted((Path(__file__).with_name("catalog_java")).glob("*.java"))
CATALOG_CLASS = "io.sparkgate.catalog.PathCatalog"


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
            "apt-get install openjdk-17-jdk-headless, or set local.catalog.enabled: false"
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


def catalog_conf(name: str, jar: Path, root: Path) -> dict[str, str]:
    return {
        "spark.jars": str(jar),
        f"spark.sql.catalog.{name}": CATALOG_CLASS,
        f"spark.sql.catalog.{name}.root": str(root),
    }
