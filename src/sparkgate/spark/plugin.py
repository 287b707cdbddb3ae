"""sparkgate's driver plugin: a jar of Spark extensions every local driver loads.

Built from the Java sources beside this module (``driver_plugin/``) with ``javac`` against the
Spark distribution's jars, once per source version and Spark (cached by hash, in the user's cache
directory: every state directory of the user shares it). It holds

* ``Extensions`` — the session extensions (``spark.sql.extensions``): two check rules on every
  plan a session analyzes. ``Sandbox`` confines a sandboxed batch job's session (no JVM calls or
  scripts, reads and writes only where the manifest allows, no commands); ``EagerCatalogs`` loads
  the configured catalogs with a session's first statement, so ``SHOW CATALOGS`` lists them at once;
* ``PathCatalog`` — the local catalog (see :mod:`sparkgate.clusters.catalog`).

Local drivers load it (:func:`sparkgate.clusters.catalog.driver_conf`), and so do batch jobs on
drivers of their own. Without a JDK it cannot be built: drivers start without it, sandboxed jobs
are refused on them (the job program checks that the sandbox is in force before it runs
anything) and the path catalog is left out.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from sparkgate.errors import ConfigError
from sparkgate.spark.home import jar_listing, user_cache_dir

log = logging.getLogger(__name__)

SOURCES = sorted(Path(__file__).with_name("driver_plugin").glob("*.java"))
#: The session extensions (``spark.sql.extensions``) in the jar.
EXTENSIONS = "io.sparkgate.Extensions"


def default_plugin_dir() -> Path:
    """Where built plugins are kept unless told otherwise: the user's cache directory."""
    return user_cache_dir("plugins")


def plugin_jar(spark_home: Path, cache_dir: Path | None = None) -> Path:
    """The compiled plugin (built with javac on first use; raises ConfigError without a JDK), kept
    in ``cache_dir`` (default: the user's cache directory)."""
    if cache_dir is None:
        cache_dir = default_plugin_dir()
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    # Built by one JDK against one Spark's jars: another Spark (or the same path upgraded in place)
    # or another JDK gets a jar of its own.
    h = hashlib.sha256(b"".join(src.read_bytes() for src in SOURCES))
    h.update(f"{spark_home.resolve()}\n{Path(javac).resolve() if javac else ''}\n".encode())
    try:
        h.update(jar_listing(spark_home).encode())
    except OSError as exc:  # (e.g. a jar that is a dangling link)
        raise ConfigError(f"sparkgate's driver plugin cannot be built against {spark_home}: {exc}") from exc
    jar = cache_dir / f"sparkgate-driver-plugin-{h.hexdigest()[:12]}.jar"
    if jar.is_file():
        return jar
    if javac is None or jar_tool is None:
        raise ConfigError(
            "sparkgate's driver plugin (the batch sandbox, the local catalog) needs a JDK to build "
            "(javac and jar not found): apt-get install openjdk-17-jdk-headless"
        )
    try:
        _build(javac, jar_tool, spark_home, jar)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"sparkgate's driver plugin could not be built into {cache_dir}: {exc}") from exc
    log.info("built sparkgate's driver plugin %s", jar)
    return jar


def _build(javac: str, jar_tool: str, spark_home: Path, jar: Path) -> None:
    """Compile the sources against ``spark_home``'s jars and put the jar at ``jar``."""
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sparkgate-plugin-") as tmp:
        (Path(tmp) / "classes").mkdir()
        out = subprocess.run(
            [javac, "-nowarn", "-cp", str(spark_home / "jars" / "*"), "-d", str(Path(tmp) / "classes")]
            + [str(src) for src in SOURCES],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if out.returncode != 0:
            raise ConfigError(f"building sparkgate's driver plugin failed:\n{out.stderr[-2000:]}")
        # Two builders at once (drivers, jobs on drivers of their own) each write a file of their
        # own and rename it into place: the cache never holds half a jar.
        partial = Path(tmp) / jar.name
        subprocess.run([jar_tool, "cf", str(partial), "-C", str(Path(tmp) / "classes"), "."], check=True, timeout=120)
        staged = jar.with_name(f".{jar.name}.{uuid.uuid4().hex}")
        try:
            shutil.move(partial, staged)
            staged.replace(jar)
        finally:
            staged.unlink(missing_ok=True)


def plugin_conf(spark_home: Path, cache_dir: Path | None = None) -> dict[str, str]:
    """The Spark conf that loads the plugin on a driver (builds it first if need be; raises
    ConfigError without a JDK)."""
    return {"spark.jars": str(plugin_jar(spark_home, cache_dir)), "spark.sql.extensions": EXTENSIONS}
