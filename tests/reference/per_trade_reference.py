"""Per-trade features from their definitions (docs/features.md, "Per-trade features"), in plain Python.

Why independent: the kernel keeps running double-double totals and subtracts the totals
before a window's first trade; this reference instead, for every trade, lists the trades
of its window by the definition (earlier or same trade, newer than t - h, no reset in
between) and sums them exactly with math.fsum.  O(n * window): slow, obviously right.

Input: time-sorted trades (ts ms, price, amount, side +1/-1/0) and reset times.
"""
from __future__ import annotations

import math

NAN = float("nan")


def _valid(p: float, q: float) -> bool:
    return math.isfinite(p) and math.isfinite(q) and p > 0 and q > 0


def _reset_between(resets: list[int], a: int, b: int) -> bool:
    """A reset at r applies before every trade at time >= r: it separates trades at a < r <= b."""
    return any(a < r <= b for r in resets)


def per_trade(trades: list[tuple[int, float, float, int]], resets: list[int], horizons: list[int]) -> list[dict]:
    trades = [t for t in trades if _valid(t[1], t[2])]
    rows = []
    for i, (ts, p, q, side) in enumerate(trades):
        prev = trades[i - 1] if i else None
        ret = math.log(p / prev[1]) if prev is not None and not _reset_between(resets, prev[0], ts) else NAN
        row = dict(timestamp=ts, price=p, amount=q, side={1: "buy", -1: "sell"}.get(side),
                   is_buy=None if side == 0 else side > 0, dollar_volume=p * q,
                   signed_volume=None if side == 0 else (q if side > 0 else -q), log_return=ret)
        for h in horizons:
            # the window: trades j <= i with t_j > ts - h, none before a reset in (t_j, ts]; times are
            # sorted, so once a trade j fails both tests fail for every earlier one: walk back from i
            s = i
            while s > 0 and trades[s - 1][0] > ts - h * 1000 and not _reset_between(resets, trades[s - 1][0], ts):
                s -= 1
            w = trades[s:i + 1]
            vol = math.fsum(t[2] for t in w)
            dq = math.fsum(t[1] * t[2] for t in w)
            buy = math.fsum(t[2] for t in w if t[3] > 0)
            sell = math.fsum(t[2] for t in w if t[3] < 0)
            # squared returns of consecutive trades that are both in the window
            rv = math.fsum(math.log(b[1] / a[1]) ** 2 for a, b in zip(w, w[1:]))
            row.update({f"vwap_{h}s": dq / vol, f"volume_{h}s": vol, f"dollar_volume_{h}s": dq,
                        f"trade_count_{h}s": len(w),
                        f"buy_ratio_{h}s": buy / (buy + sell) if buy + sell > 0 else NAN,
                        f"realized_var_{h}s": rv,
                        f"tfi_{h}s": (buy - sell) / (buy + sell) if buy + sell > 0 else NAN})
        rows.append(row)
    return rows
