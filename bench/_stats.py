"""The one percentile every bench reports (nearest rank: the smallest sample with at least ``q`` of
the samples at or below it)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(samples: Iterable[float], q: float) -> float:
    data = sorted(samples)
    if not data:
        raise ValueError("no samples")
    return data[max(0, math.ceil(q * len(data)) - 1)]
