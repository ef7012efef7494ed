"""Drop trades an exchange delivered twice: the same trade id of one symbol, seen again.

Why: after a reconnect some exchanges (and ccxt's trade cache) hand recent trades
out again, so bronze holds them twice and volume/VPIN/flow features would count
them twice.  Bronze keeps what the exchange said (DESIGN decision 3); the ETL
removes the repeats before the kernels see them.

Why a window: remembering every id forever would grow without bound.  A repeat
carries its original exchange time, so it is only a repeat if an earlier trade
with that id is at most `WINDOW_MS` older than the newest trade seen; older ids
are forgotten (and at most `MAX_IDS` newest are kept).  The remembered ids are
part of the symbol's carry in the checkpoint, so N segments give what one does.
Trades without an id are never dropped.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

WINDOW_MS = 120_000
MAX_IDS = 20_000


def drop_repeated(trades: pa.Table | None, seen: dict[str, int], ts: np.ndarray) -> tuple[pa.Table | None, int]:
    """`trades` (time-sorted, exchange ms in `ts`) without ids already in `seen` or repeated
    within; `seen` (id -> exchange ms) is updated and pruned in place.  Returns (kept, dropped)."""
    if trades is None or trades.num_rows == 0 or "trade_id" not in trades.column_names:
        return trades, 0
    ids = trades.column("trade_id").to_pylist()
    keep = np.ones(len(ids), dtype=bool)
    for i, tid in enumerate(ids):
        if tid is None:
            continue
        if tid in seen:
            keep[i] = False
        else:
            seen[tid] = int(ts[i])
    _prune(seen)
    dropped = int(len(ids) - keep.sum())
    return (trades.filter(pa.array(keep)) if dropped else trades), dropped


def _prune(seen: dict[str, int]) -> None:
    if not seen:
        return
    horizon = max(seen.values()) - WINDOW_MS
    # ids arrive in time order: the old ones are a prefix (one pass over the expired, not over all)
    old = []
    for k, t in seen.items():
        if t >= horizon:
            break
        old.append(k)
    for k in old:
        del seen[k]
    if seen and min(seen.values()) < horizon:  # out of order (a redelivery, a restored carry): scan all
        for k in [k for k, t in seen.items() if t < horizon]:
            del seen[k]
    if len(seen) > MAX_IDS:
        for k, _t in sorted(seen.items(), key=lambda kv: kv[1])[:len(seen) - MAX_IDS]:
            del seen[k]
