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


# -- the pedregal catalog's sample tables ---------------------------------------------------------

#: Days of partitions written, ending today (typical queries look at the last 7 days).
PEDREGAL_DAYS = 14
_EVENT_TYPES = ["view", "view", "view", "click", "click", "purchase"]


def _spark_schema(fields: list[tuple[str, str]]) -> str:
    import json

    return json.dumps(
        {"type": "struct", "fields": [{"name": n, "type": t, "nullable": True, "metadata": {}} for n, t in fields]}
    )


#: The local catalog's namespace for users' own tables (``CREATE TABLE pedregal.scratch.mine AS ...``).
SCRATCH_NAMESPACE = "scratch"


def write_pedregal_catalog(root: str | Path, today: dt.date | None = None) -> dict[str, int]:
    """Write ``raw.events``, ``raw.orders`` and ``feature_store.user_features`` (``ds`` partitions for
    the last :data:`PEDREGAL_DAYS` days) in the local catalog's layout, if not already written today,
    and an empty namespace, :data:`SCRATCH_NAMESPACE`, for tables of one's own."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    today = today or dt.date.today()
    base = Path(root)
    (base / SCRATCH_NAMESPACE).mkdir(parents=True, exist_ok=True)
    stamp = base / ".generated"
    version = f"{today.isoformat()} v2"  # bump when the tables change
    if stamp.is_file() and stamp.read_text().strip() == version:
        return {}
    rng = random.Random(7)
    days = [today - dt.timedelta(days=i) for i in range(PEDREGAL_DAYS)]
    users = 200
    tables: dict[str, tuple[list[tuple[str, str]], dict[dt.date, dict[str, list[object]]]]] = {
        "raw.events": (
            [
                ("user_id", "long"),
                ("event_type", "string"),
                ("item_id", "long"),
                ("event_timestamp", "timestamp"),
                ("ds", "date"),
            ],
            {},
        ),
        "raw.orders": ([("order_id", "long"), ("user_id", "long"), ("amount", "double"), ("ds", "date")], {}),
        "feature_store.user_features": (
            [
                ("user_id", "long"),
                ("total_events", "long"),
                ("views", "long"),
                ("clicks", "long"),
                ("purchases", "long"),
                ("click_through_rate", "double"),
                ("ds", "date"),
            ],
            {},
        ),
    }
    order_id = 0
    for day in days:
        events = {"user_id": [], "event_type": [], "item_id": [], "event_timestamp": []}  # type: dict[str, list[object]]
        counts: dict[int, dict[str, int]] = {}
        for _ in range(600):
            user, kind = rng.randint(1, users), rng.choice(_EVENT_TYPES)
            events["user_id"].append(user)
            events["event_type"].append(kind)
            events["item_id"].append(rng.randint(1, 500))
            midnight = dt.datetime.combine(day, dt.time())
            events["event_timestamp"].append(midnight + dt.timedelta(seconds=rng.randint(0, 86399)))
            c = counts.setdefault(user, {"view": 0, "click": 0, "purchase": 0})
            c[kind] += 1
        tables["raw.events"][1][day] = events
        orders: dict[str, list[object]] = {"order_id": [], "user_id": [], "amount": []}
        for user, c in counts.items():
            for _ in range(c["purchase"]):
                order_id += 1
                orders["order_id"].append(order_id)
                orders["user_id"].append(user)
                orders["amount"].append(round(rng.uniform(5, 150), 2))
        tables["raw.orders"][1][day] = orders
        feats: dict[str, list[object]] = {k: [] for k in ("user_id", "total_events", "views", "clicks", "purchases")}
        feats["click_through_rate"] = []
        for user in sorted(counts):
            c = counts[user]
            feats["user_id"].append(user)
            feats["total_events"].append(sum(c.values()))
            feats["views"].append(c["view"])
            feats["clicks"].append(c["click"])
            feats["purchases"].append(c["purchase"])
            feats["click_through_rate"].append(round(c["click"] / c["view"], 4) if c["view"] else 0.0)
        tables["feature_store.user_features"][1][day] = feats
    types = {"long": pa.int64(), "string": pa.string(), "double": pa.float64(), "timestamp": pa.timestamp("us")}
    written: dict[str, int] = {}
    for name, (fields, by_day) in tables.items():
        ns, table = name.split(".")
        data_dir = base / ns / table
        shutil.rmtree(data_dir, ignore_errors=True)
        (base / ns).mkdir(parents=True, exist_ok=True)
        (base / ns / f"{table}.schema.json").write_text(_spark_schema(fields))
        cols = [(n, types[t]) for n, t in fields if n != "ds"]
        rows = 0
        for day, columns in by_day.items():
            part = data_dir / f"ds={day.isoformat()}"
            part.mkdir(parents=True, exist_ok=True)
            arrow = pa.table({n: pa.array(columns[n], t) for n, t in cols})
            pq.write_table(arrow, part / "part-00000.parquet")
            rows += arrow.num_rows
        written[name] = rows
    stamp.write_text(version)
    return written
