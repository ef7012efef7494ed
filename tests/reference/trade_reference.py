"""Trade time bars from their definitions (docs/features.md, "Trade bars"), in plain Python.

Why independent: written from the definitions over the whole stream at once (group
trades by bar index, then walk bars), not from the kernel's event loop, so the
differential tests compare two different derivations of the same columns.

Input: time-sorted trades (ts ms, price, amount, side +1/-1/0), reset times, and the
latest exchange time known to have passed (`until`); with `max_gap_ms`, a valid trade more
than that after the previous valid trade is a reset too (tests/reference/time_gaps.py).  A bar [k d, (k+1) d) is output
once some time >= (k+1) d has been seen; empty bars at most MAX_EMPTY_BARS after the
last bar with trades.
"""
from __future__ import annotations

import math

from tests.reference.time_gaps import gap_resets

MAX_EMPTY_BARS = 86400
NAN = float("nan")


def _valid(p: float, q: float) -> bool:
    return math.isfinite(p) and math.isfinite(q) and p > 0 and q > 0


def trade_bars(trades: list[tuple[int, float, float, int]], resets: list[int], until: int | None,
               duration_s: int, max_gap_ms: int | None = None) -> list[dict]:
    d = duration_s * 1000
    trades = [t for t in trades if _valid(t[1], t[2])]
    resets = sorted(set(resets) | set(gap_resets([t[0] for t in trades], max_gap_ms)))
    if not trades:
        return []
    seen = max([t[0] for t in trades] + [r for r in resets if r >= trades[0][0]] + ([until] if until is not None else []))
    groups: dict[int, list[tuple[int, float, float, int]]] = {}
    for t in trades:
        groups.setdefault(t[0] // d, []).append(t)
    rows = []
    last_full = None    # index of the latest bar with trades
    carry = NAN
    for k in range(trades[0][0] // d, seen // d):   # bars that closed: (k + 1) d <= seen
        g = groups.get(k, [])
        if not g and k - last_full > MAX_EMPTY_BARS:
            continue
        ref = NAN
        if last_full is not None and not any((last_full + 1) * d <= r < (k + 1) * d for r in resets):
            ref = groups[last_full][-1][1]
        if g:
            prices = [t[1] for t in g]
            vol = sum_seq(t[2] for t in g)
            dq = sum_seq(t[1] * t[2] for t in g)
            buy = sum_seq(t[2] for t in g if t[3] > 0)
            sell = sum_seq(t[2] for t in g if t[3] < 0)
            rv = 0.0
            for a, b in zip(g, g[1:]):
                if not any(a[0] < r <= b[0] for r in resets):
                    rv += math.log(b[1] / a[1]) ** 2
            o, h, lo, c = prices[0], max(prices), min(prices), prices[-1]
            row = dict(open=o, high=h, low=lo, close=c, volume=vol, dollar_volume=dq, vwap=dq / vol,
                       trade_count=len(g), buy_volume=buy, sell_volume=sell,
                       buy_count=sum(1 for t in g if t[3] > 0), sell_count=sum(1 for t in g if t[3] < 0),
                       trade_imbalance=(buy - sell) / (buy + sell) if buy + sell > 0 else NAN,
                       realized_variance=rv, max_trade=max(t[2] for t in g), is_empty=False,
                       unknown_side_count=sum(1 for t in g if t[3] == 0))
            carry = c
        else:
            row = dict(open=carry, high=carry, low=carry, close=carry, volume=0.0, dollar_volume=0.0, vwap=NAN,
                       trade_count=0, buy_volume=0.0, sell_volume=0.0, buy_count=0, sell_count=0,
                       trade_imbalance=NAN, realized_variance=0.0, max_trade=0.0, is_empty=True,
                       unknown_side_count=0)
        row["log_return"] = math.log(row["close"] / ref) if math.isfinite(ref) else NAN
        row["timestamp"] = k * d
        row["duration"] = duration_s
        rows.append(row)
        if g:
            last_full = k
    return rows


def sum_seq(values) -> float:
    """Left-to-right float sum (the order the definitions imply, so results agree to rounding)."""
    total = 0.0
    for v in values:
        total += v
    return total


def info_bars(trades: list[tuple[int, float, float, int]], resets: list[int], threshold: float,
              dollar: bool, max_gap_ms: int | None = None) -> list[dict]:
    """Volume (dollar=False) or dollar bars: a bar completes when its size reaches `threshold`.

    Sizes in integer units of 1e-8 (base or quote); a trade crossing the threshold is
    split, each bar taking the share room/units of what is left of the trade."""
    thr = math.floor(threshold * 1e8 + 0.5)
    # expand trades into (trade index, ts, price, amount part, side, units part) pieces
    pieces = []
    fill = 0
    last = None
    for i, (ts, p, q, side) in enumerate(t for t in trades if _valid(t[1], t[2])):
        units = math.floor((p * q if dollar else q) * 1e8 + 0.5)
        if units <= 0:
            continue
        while units > 0:
            take = min(units, thr - fill)
            part = q * (take / units)
            q -= part
            units -= take
            fill += take
            pieces.append((i, ts, p, part, side, fill == thr))
            if fill == thr:
                fill = 0
        last = ts
    rows, bar, prev_close, prev_trade = [], [], NAN, None
    resets = sorted(set(resets) | set(gap_resets([t[0] for t in trades if _valid(t[1], t[2])], max_gap_ms)))
    for piece in pieces:
        bar.append(piece)
        if not piece[5]:
            continue
        first_ts, end_ts = bar[0][1], bar[-1][1]
        prices = [b[2] for b in bar]
        parts = [b[3] for b in bar]
        rv = 0.0
        for a, b in zip(bar, bar[1:]):
            if a[0] != b[0] and not any(a[1] < r <= b[1] for r in resets):
                rv += math.log(b[2] / a[2]) ** 2
        if prev_trade is not None and any(prev_trade < r <= end_ts for r in resets):
            prev_close = NAN
        buy = sum_seq(b[3] for b in bar if b[4] > 0)
        sell = sum_seq(b[3] for b in bar if b[4] < 0)
        vol = sum_seq(parts)
        dq = sum_seq(b[2] * b[3] for b in bar)
        rows.append(dict(timestamp=end_ts, start_ts=first_ts, end_ts=end_ts, threshold=threshold,
                         duration=(end_ts - first_ts) / 1000.0, open=prices[0], high=max(prices), low=min(prices),
                         close=prices[-1], volume=vol, dollar_volume=dq, vwap=dq / vol, trade_count=len(bar),
                         buy_volume=buy, sell_volume=sell, buy_count=sum(1 for b in bar if b[4] > 0),
                         sell_count=sum(1 for b in bar if b[4] < 0),
                         trade_imbalance=(buy - sell) / (buy + sell) if buy + sell > 0 else NAN,
                         realized_variance=rv, max_trade=max(parts), is_empty=False,
                         unknown_side_count=sum(1 for b in bar if b[4] == 0),
                         log_return=math.log(prices[-1] / prev_close) if math.isfinite(prev_close) else NAN))
        prev_close, prev_trade = prices[-1], end_ts
        bar = []
    del last
    return rows
