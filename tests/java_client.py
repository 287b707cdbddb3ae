"""Building and running Java programs against the Spark Connect JVM client the pyspark wheel ships."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

#: Jars of Spark Classic and the servers: with ``org.apache.spark.sql.classic.SparkSession`` on the
#: classpath, ``SparkSession.builder()`` builds a classic session instead of a Connect one.
_SERVER_SIDE = re.compile(
    r"spark-(sql|connect|hive|hive-thriftserver|mllib|mllib-local|graphx|streaming|repl|pipelines)_"
)


def classpath() -> str:
    """The JVM client (``jars/connect-repl/``) with the wheel's common jars."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    common = [str(j) for j in sorted(jars.glob("*.jar")) if not _SERVER_SIDE.match(j.name)]
    return ":".join([str(jars / "connect-repl" / "*"), *common])


def build(source: Path, out: Path) -> list[str]:
    """Compile ``source`` into ``out``; returns the ``java`` command that runs its class."""
    cp = classpath()
    subprocess.run(["javac", "-cp", cp, "-d", str(out), str(source)], check=True, timeout=180)
    # Arrow (the result format) needs java.nio opened on Java 17, as for every Spark JVM.
    return ["java", "-Xmx512m", "--add-opens=java.base/java.nio=ALL-UNNAMED", "-cp", f"{out}:{cp}", source.stem]
