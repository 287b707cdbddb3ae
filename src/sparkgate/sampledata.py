"""The local sample catalog: small, deterministic tables for demos, samples and tests.

``write_sample_catalog(root)`` writes ``root/samples/stores`` and ``root/samples/orders`` as Parquet
(with pyarrow, no Spark needed). Jobs read them as ``samples.stores`` / ``samples.orders``: on the
local platform the runner points ``--catalog-root`` here (``{state_dir}/catalog``).
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

CITIES = ["San Francisco", "New York", "Chicago", "Austin", "Seattle", "Denver", "Boston", "Miami"]
DAYS = [dt.date(2024, 6, 1) + dt.timedelta(days=i) for i in range(7)]
STORES = 20
ORDERS = 5000


def write_sample_catalog(root: str | Path) -> dict[str, int]:
    """Write the sample tables (again, identically) and return their row counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(42)
    base = Path(root) / "samples"
    stores = pa.table(
        {
            "store_id": pa.array(range(1, STORES + 1), pa.int32()),
            "name": [f"Store {i:02d}" for i in range(1, STORES + 1)],
            "city": [CITIES[i % len(CITIES)] for i in range(STORES)],
            "opened": [dt.date(2020, 1, 1) + dt.timedelta(days=30 * i) for i in range(STORES)],
        }
    )
    order_days = [rng.choice(DAYS) for _ in range(ORDERS)]
    orders = pa.table(
        {
            "order_id": pa.array(range(1, ORDERS + 1), pa.int64()),
            "store_id": pa.array([rng.randint(1, STORES) for _ in range(ORDERS)], pa.int32()),
            "customer_id": pa.array([rng.randint(1, 800) for _ in range(ORDERS)], pa.int32()),
            "amount": [round(rng.uniform(5, 120), 2) for _ in range(ORDERS)],
            "ds": [d.isoformat() for d in order_days],
        }
    )
    for name, table in (("stores", stores), ("orders", orders)):
        d = base / name
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, d / "part-00000.parquet")
    return {"samples.stores": stores.num_rows, "samples.orders": orders.num_rows}
