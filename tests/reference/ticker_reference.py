"""Ticker features from their definitions (docs/features.md, "Ticker features"), in plain Python.

Why independent: the kernel keeps double-double prefix sums and window pointers; this
takes, for each row, the list of rows of its window straight from the definition and
computes means and standard deviations in exact rational arithmetic (`Fraction`),
rounded once.  So the differential tests compare two different derivations.

Input: ticker rows in stream (time) order as (ts ms, bid, ask, bid_size, ask_size, last,
vwap, base_volume, quote_volume) with NaN for a missing value, and reset times (ms).
A reset at time r comes before tickers with ts >= r; a ticker older than the newest time
already processed (ticker or reset) is late; a ticker equal to the previous kept one in
time and every value is a redelivery.  Both are dropped.
"""
from __future__ import annotations

import bisect
import math
from fractions import Fraction

NAN = float("nan")


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def quote(bid: float, ask: float) -> tuple[float, float, float]:
    """mid, spread, relative spread of a valid quote (finite, > 0, bid <= ask), else NaN."""
    if not (math.isfinite(bid) and math.isfinite(ask) and bid > 0 and ask > 0 and bid <= ask):
        return NAN, NAN, NAN
    mid = (bid + ask) / 2
    spread = ask - bid
    return mid, spread, spread / mid


def imbalance(bid_size: float, ask_size: float) -> float:
    ok = math.isfinite(bid_size) and math.isfinite(ask_size) and bid_size >= 0 and ask_size >= 0
    if not ok or bid_size + ask_size <= 0:
        return NAN
    return (bid_size - ask_size) / (bid_size + ask_size)


def kept_rows(rows: list[tuple], resets: list[int]) -> list[tuple[tuple, int]]:
    """The tickers that make rows, each with its epoch (how many resets came before it)."""
    events = sorted([(r, 0, None) for r in resets] + [(row[0], 1, row) for row in rows],
                    key=lambda e: (e[0], e[1]))  # stable: tickers keep their order, a reset first at ties
    out, newest, epoch, prev = [], None, 0, None
    for ts, is_ticker, row in events:
        if not is_ticker:
            epoch += 1
            newest = ts if newest is None else max(newest, ts)
            continue
        if newest is not None and ts < newest:
            continue
        if prev is not None and all(_same(a, b) for a, b in zip(row, prev)):
            continue
        newest, prev = ts, row
        out.append((row, epoch))
    return out


def _mean(values: list[float]) -> float:
    return float(sum(Fraction(v) for v in values) / len(values)) if values else NAN


def _std(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return NAN
    m = sum(Fraction(v) for v in values) / n
    return math.sqrt(float(sum((Fraction(v) - m) ** 2 for v in values) / (n - 1)))


def ticker_features(rows: list[tuple], resets: list[int], horizons: list[int]) -> list[dict]:
    kept = kept_rows(rows, resets)
    derived = []
    for row, _ in kept:
        mid, spread, rel = quote(row[1], row[2])
        derived.append((mid, spread, rel, imbalance(row[3], row[4])))
    times = [row[0] for row, _ in kept]
    out = []
    for i, ((row, epoch), (mid, spread, rel, imb)) in enumerate(zip(kept, derived)):
        rec = dict(timestamp=row[0], bid=row[1], ask=row[2], mid_price=mid, spread=spread, relative_spread=rel,
                   volume_imbalance=imb, last=row[5], vwap=row[6], base_volume=row[7], quote_volume=row[8])
        for h in horizons:
            first = bisect.bisect_right(times, row[0] - h * 1000)  # times are sorted: rows before are older
            window = [derived[j] for j in range(first, i + 1)
                      if kept[j][1] == epoch and kept[j][0][0] > row[0] - h * 1000]
            mids = [w[0] for w in window if not math.isnan(w[0])]
            rec[f"mid_mean_{h}s"] = _mean(mids)
            rec[f"mid_std_{h}s"] = _std(mids)
            rec[f"spread_mean_{h}s"] = _mean([w[1] for w in window if not math.isnan(w[1])])
            rec[f"vol_imbalance_mean_{h}s"] = _mean([w[3] for w in window if not math.isnan(w[3])])
        out.append(rec)
    return out
