"""Catalogs on local drivers: sparkgate's path catalog and the conf that mounts a catalog.

Each environment names its catalog (``environments.<env>.catalog``, see :class:`CatalogSettings`);
a driver mounts its profile's. Production names Unity Catalog (``io.unitycatalog.spark.UCSingleCatalog``),
whose jars come from Maven. Locally only the pyspark wheel's jars exist, so sparkgate's driver
plugin (:mod:`sparkgate.spark.plugin`) holds a small catalog, ``PathCatalog``
(see ``docs/design/local-catalog.md``): tables are Parquet directories under one root, read and
written by Spark's own V2 ``ParquetTable``. :func:`prepare_catalog` writes the sample tables and
returns the catalog's conf; the plugin's ``EagerCatalogs`` extension loads it with a session's
first statement, so ``SHOW CATALOGS`` lists it at once (Spark loads catalogs on first use).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sparkgate.config import CatalogSettings
from sparkgate.errors import ConfigError
from sparkgate.sampledata import write_pedregal_catalog
from sparkgate.spark.plugin import plugin_conf

log = logging.getLogger(__name__)


def prepare_catalog(catalog: CatalogSettings, state_dir: Path) -> dict[str, str]:
    """The Spark conf that mounts ``catalog`` on a local driver (blocking: writes a path
    catalog's sample tables the first time)."""
    root = None
    if catalog.is_path_catalog:
        root = state_dir / (catalog.root or f"catalog/{catalog.name}")
        if catalog.sample_data:
            tables = write_pedregal_catalog(root)
            if tables:
                log.info("wrote sample tables into %s (%s): %s", catalog.name, root, _counts(tables))
    return catalog.spark_conf(root)


def _counts(tables: dict[str, int]) -> str:
    return ", ".join(f"{k} ({v} rows)" for k, v in tables.items())


def driver_conf(catalog: CatalogSettings, spark_home: Path, state_dir: Path) -> dict[str, str]:
    """The Spark conf sparkgate adds to a local driver: the plugin and the mounted ``catalog``
    (blocking: may run javac and write the sample tables)."""
    try:
        plugin = plugin_conf(spark_home)
    except ConfigError as exc:
        lost = "sandboxed jobs are refused on them"
        if catalog.enabled and catalog.is_path_catalog:
            lost += f", and {catalog.name} is left out"
        elif catalog.enabled:
            lost += f", and SHOW CATALOGS lists {catalog.name} only once used"
        log.warning("local drivers start without sparkgate's driver plugin (%s): %s", lost, exc.message)
        plugin = {}
    conf: dict[str, str] = {}
    if catalog.enabled and (plugin or not catalog.is_path_catalog):
        conf |= prepare_catalog(catalog, state_dir)
    return conf | plugin
