"""JSON as the store writes it, and the hash that makes "never the same config twice" exact."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from sweepflow.store._errors import StoreError


def _default(value: Any) -> Any:
    # numpy scalars and arrays (the sweeps engine suggests them): .tolist() gives Python numbers / lists.
    convert = getattr(value, "tolist", None)
    if callable(convert):
        return convert()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """Compact JSON. NaN and ±Infinity pass (a diverged loss is a real summary value) as Python writes them."""
    try:
        return json.dumps(value, separators=(",", ":"), default=_default)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store {value!r:.200}: {exc}") from exc


def loads(text: str) -> Any:
    return json.loads(text)


def _canonical(value: Any) -> Any:
    # 1 and 1.0 are the same config to the script (and to Python); so is {"a", "b"} in either key order.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the config's canonical JSON: keys sorted, integral floats as ints, numpy scalars as Python."""
    plain = json.loads(dumps(config))
    canonical = json.dumps(_canonical(plain), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
