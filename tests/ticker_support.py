"""Synthetic bronze ticker rows beside a synthetic market (tests/etl_support.py), for ETL tests."""
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from etl_support import T0_MS
from fluxforge.bronze import schemas as bronze


def synthetic_tickers(market: dict, seconds: float, seed: int = 3, hz: float = 4.0,
                      late_ns: int = 3_000_000_000) -> pa.Table:
    """Ticker rows for every symbol of `market`: its book tops at random times, with missing
    sides, crossed quotes, missing sizes and redelivered duplicates; receive order, jittered."""
    rng = np.random.default_rng(seed)
    books = market["orderbook"]
    out = []
    for sym in sorted(set(books.column("symbol").to_pylist())):
        b = books.filter(pa.compute.equal(books.column("symbol"), sym)).sort_by("timestamp")
        bts = b.column("timestamp").to_numpy()
        n = int(seconds * hz)
        ts = np.sort(T0_MS + rng.integers(0, int(seconds * 1000), n))
        idx = np.clip(np.searchsorted(bts, ts), 0, len(bts) - 1)
        bid = np.array([b.column("bid_px")[int(i)][0].as_py() for i in idx])
        ask = np.array([b.column("ask_px")[int(i)][0].as_py() for i in idx])
        bsz, asz = rng.uniform(0, 4, n).round(3), rng.uniform(0, 4, n).round(3)
        kind = rng.integers(0, 25, n)
        bid = np.where(kind == 0, np.nan, bid)
        ask = np.where(kind == 1, bid - 0.01, ask)  # crossed
        bsz = np.where(kind == 2, np.nan, bsz)
        dup = np.flatnonzero(kind == 3)
        keep = np.sort(np.concatenate([np.arange(n), dup]))  # a duplicate right after its original
        vol = 1000.0 + np.arange(n)  # the exchange's 24 h volume: a duplicate repeats it exactly
        ts, bid, ask, bsz, asz, vol = ts[keep], bid[keep], ask[keep], bsz[keep], asz[keep], vol[keep]
        m = len(ts)
        nul = lambda a: pa.array(a, pa.float64(), from_pandas=True)  # noqa: E731  NaN -> null
        out.append(pa.table({
            "exchange": ["binance"] * m, "symbol": [sym] * m, "timestamp": ts,
            "recv_ns": ts * 1_000_000 + rng.integers(500_000, late_ns, m),  # up to late_ns late
            "bid": nul(bid), "bid_size": nul(bsz), "ask": nul(ask), "ask_size": nul(asz),
            "last": (bid + ask) / 2, "open": np.full(m, 100.0), "high": np.full(m, 110.0),
            "low": np.full(m, 90.0), "base_volume": vol, "quote_volume": vol * 100.0,
            "vwap": np.full(m, 100.5), "percentage": np.full(m, 0.1),
        }, schema=bronze.TICKER))
    return pa.concat_tables(out).sort_by("recv_ns")
