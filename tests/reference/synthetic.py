"""Synthetic bronze books and trades: a random-walk market with realistic shapes.

Why here: the differential tests and bench/kernels.py need the same generator,
and it must produce Arrow tables in the bronze schema (list columns per side).
Levels are built column-wise with numpy (no per-row Python), so a million
snapshots take a couple of seconds.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from fluxforge.bronze import schemas as bronze


def _list_column(values: np.ndarray) -> pa.ListArray:
    n, width = values.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))


def book_table(ts: np.ndarray, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray,
               symbol: str = "BTC/USDT") -> pa.Table:
    n = len(ts)
    return pa.table({
        "exchange": pa.array(["synthetic"] * n if n < 10000 else np.full(n, "synthetic", dtype=object)),
        "symbol": pa.array(np.full(n, symbol, dtype=object)),
        "timestamp": pa.array(ts, type=pa.int64()),
        "recv_ns": pa.array(ts * 1_000_000, type=pa.int64()),
        "kind": pa.array(np.full(n, "snapshot", dtype=object)),
        "nonce": pa.array(np.arange(n, dtype=np.int64)),
        "prev_nonce": pa.nulls(n, pa.int64()), "checksum": pa.nulls(n, pa.int64()),
        "bid_px": _list_column(bid_px), "bid_sz": _list_column(bid_sz),
        "ask_px": _list_column(ask_px), "ask_sz": _list_column(ask_sz),
    }, schema=bronze.ORDERBOOK)


def trade_table(ts: np.ndarray, price: np.ndarray, amount: np.ndarray, side: np.ndarray,
                symbol: str = "BTC/USDT") -> pa.Table:
    n = len(ts)
    return pa.table({
        "exchange": pa.array(np.full(n, "synthetic", dtype=object)),
        "symbol": pa.array(np.full(n, symbol, dtype=object)),
        "timestamp": pa.array(ts, type=pa.int64()),
        "recv_ns": pa.array(ts * 1_000_000, type=pa.int64()),
        "trade_id": pa.array(np.arange(n).astype(str)),
        "price": pa.array(price), "amount": pa.array(amount), "side": pa.array(side),
    }, schema=bronze.TRADES)


def market(n_books: int, levels: int = 20, seed: int = 0, step_ms: int = 100, trades_per_book: float = 0.5,
           tick: float = 0.01, start_ms: int = 1_723_161_255_000) -> tuple[pa.Table, pa.Table]:
    """A random-walk mid with 1-3 tick spreads, log-normal sizes, Poisson trades."""
    rng = np.random.default_rng(seed)
    ts = start_ms + np.cumsum(rng.integers(0, 2 * step_ms + 1, n_books)).astype(np.int64)
    mid_ticks = 10_000 + np.cumsum(rng.integers(-2, 3, n_books))
    spread = rng.integers(1, 4, n_books)
    bid0 = mid_ticks - spread // 2
    ask0 = bid0 + spread
    gaps = rng.integers(1, 3, (n_books, levels)).cumsum(axis=1) - 1
    bid_px = (bid0[:, None] - gaps) * tick
    ask_px = (ask0[:, None] + gaps) * tick
    bid_sz = np.round(rng.lognormal(0.0, 1.0, (n_books, levels)), 5) + 1e-5
    ask_sz = np.round(rng.lognormal(0.0, 1.0, (n_books, levels)), 5) + 1e-5
    books = book_table(ts, bid_px, bid_sz, ask_px, ask_sz)
    n_tr = int(n_books * trades_per_book)
    t_ts = np.sort(rng.integers(ts[0], ts[-1] + 1, n_tr)).astype(np.int64)
    where = np.clip(np.searchsorted(ts, t_ts, side="right") - 1, 0, n_books - 1)
    side = np.where(rng.random(n_tr) < 0.5, "buy", "sell")
    price = np.where(side == "buy", ask_px[where, 0], bid_px[where, 0])
    amount = np.round(rng.lognormal(-1.0, 1.0, n_tr), 5) + 1e-5
    return books, trade_table(t_ts, price, amount, side.astype(object))


def trades_from_rows(rows: list[tuple]) -> pa.Table:
    """(ts ms, trade id, price, amount, side) tuples as a bronze-shaped trades table (the trade tests' input)."""
    return pa.table({
        "timestamp": pa.array([r[0] for r in rows], pa.int64()),
        "trade_id": pa.array([r[1] for r in rows], pa.string()),
        "price": pa.array([r[2] for r in rows], pa.float64()),
        "amount": pa.array([r[3] for r in rows], pa.float64()),
        "side": pa.array([r[4] for r in rows], pa.string()),
    })
