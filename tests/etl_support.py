"""Test support for the ETL: synthetic bronze segments and a transparent engine double.

Segments are written with the bronze schemas of fluxforge/bronze/schemas.py and a
manifest like the collector's, split by receive time the way the collector
rotates, so "30 segments" and "1 segment" hold exactly the same rows.

`LedgerEngine` is a deliberately simple engine with the FeatureEngine contract
(process/reset/get_state/from_state, N chunks == 1 chunk, trades first at equal
times) whose outputs expose what it was fed: it lets the unit tests check the
ETL's ordering, reset and checkpoint mechanics independently of the kernels.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fluxforge.bronze import schemas as bronze
from fluxforge.bronze.finish import build_segment
from fluxforge.bronze.segments import SegmentId, SegmentStore
from fluxforge.features.book_rows import BookRows
from fluxforge.features.trade_rows import TradeRows

T0_MS = 1_723_075_200_000  # 2024-08-08T00:00:00Z


def synthetic_market(symbols=("BTC/USDT", "ETH/USDT"), exchange="binance", seconds=120.0, hz=10.0,
                     depth=20, seed=7, start_ms=T0_MS, trades_per_s=5.0, gaps=()) -> dict[str, pa.Table]:
    """Books, trades and events tables for `symbols`; rows are in receive order like a collector's.

    gaps: iterable of (symbol, ms offset) -> a `gap` event row at that time.
    """
    rng = np.random.default_rng(seed)
    books, trades = [], []
    for k, sym in enumerate(symbols):
        n = int(seconds * hz)
        ts = start_ms + np.sort(rng.integers(0, int(seconds * 1000), n))
        mid = 100.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
        tick = 0.01 * (k + 1)
        spread = tick * rng.integers(1, 4, n)
        lv = np.arange(depth)
        bid_px = np.round((mid - spread / 2)[:, None] / tick) * tick - lv * tick
        ask_px = bid_px[:, :1] + spread[:, None] + lv * tick
        bid_sz = rng.uniform(0.1, 5, (n, depth)).round(4)
        ask_sz = rng.uniform(0.1, 5, (n, depth)).round(4)
        recv = ts * 1_000_000 + rng.integers(1_000_000, 5_000_000, n)
        books.append(pa.table({
            "exchange": [exchange] * n, "symbol": [sym] * n, "timestamp": ts, "recv_ns": recv,
            "kind": ["snapshot"] * n, "nonce": np.arange(n, dtype=np.int64) + 1000,
            "prev_nonce": pa.nulls(n, pa.int64()), "checksum": pa.nulls(n, pa.int64()),
            "bid_px": list(bid_px), "bid_sz": list(bid_sz), "ask_px": list(ask_px), "ask_sz": list(ask_sz),
        }, schema=bronze.ORDERBOOK))
        m = int(seconds * trades_per_s)
        tts = start_ms + np.sort(rng.integers(0, int(seconds * 1000), m))
        idx = np.clip(np.searchsorted(ts, tts), 0, n - 1)
        trades.append(pa.table({
            "exchange": [exchange] * m, "symbol": [sym] * m, "timestamp": tts,
            "recv_ns": tts * 1_000_000 + rng.integers(1_000_000, 5_000_000, m),
            "trade_id": [str(i) for i in range(m)], "price": mid[idx].round(2),
            "amount": rng.uniform(0.001, 2, m).round(5),
            "side": rng.choice(["buy", "sell"], m).tolist(),
        }, schema=bronze.TRADES))
    ev = [(exchange, sym, start_ms + off) for sym, off in gaps]
    events = pa.table({
        "exchange": [e[0] for e in ev], "symbol": [e[1] for e in ev], "channel": ["orderbook"] * len(ev),
        "timestamp": [e[2] for e in ev], "recv_ns": [e[2] * 1_000_000 for e in ev],
        "event": ["gap"] * len(ev), "reason": ["test gap"] * len(ev), "count": [None] * len(ev),
    }, schema=bronze.EVENTS)
    by_recv = lambda t: t.sort_by("recv_ns")  # noqa: E731
    return {"orderbook": by_recv(pa.concat_tables(books)), "trades": by_recv(pa.concat_tables(trades)),
            "events": by_recv(events)}


def write_segment(parent: Path, seg: SegmentId, tables: dict[str, pa.Table]) -> Path:
    """A finished segment directory in `parent`, made by the collector's own journals + finishing.

    `parent` is usually a store's ready/; otherwise the segment is finished in a
    scratch store next to it and moved in (one rename, like the collector).
    """
    parent = Path(parent)
    if parent.name == "ready":
        store = SegmentStore(parent.parent).ensure()
    else:
        store = SegmentStore(parent.parent / f".{parent.name}-build").ensure()
    path = build_segment(store, seg.host, tables, when=seg.start_datetime, seq=seg.seq)
    if path.parent != parent:
        parent.mkdir(parents=True, exist_ok=True)
        path = path.rename(parent / path.name)
    return path


def write_segments(parent: Path, tables: dict[str, pa.Table], n: int, host="testhost",
                   start_ms=T0_MS, seconds=120.0, first_seq=1) -> list[Path]:
    """Split `tables` into n segments by receive time (like collector rotation) and write them."""
    parent.mkdir(parents=True, exist_ok=True)
    edges = np.linspace(start_ms * 1_000_000, (start_ms + seconds * 1000 + 10_000) * 1_000_000, n + 1)
    edges[-1] = np.inf
    out = []
    for i in range(n):
        part = {}
        for ch, t in tables.items():
            recv = t.column("recv_ns").to_numpy()
            mask = (recv >= edges[i]) & (recv < edges[i + 1])
            part[ch] = t.filter(pa.array(mask))
        from datetime import datetime, timezone
        when = datetime.fromtimestamp(edges[i] / 1e9, tz=timezone.utc)
        out.append(write_segment(parent, SegmentId.new(host, first_seq + i, when), part))
    return out


class LedgerEngine:
    """Contract-shaped engine double: one hf row per book with running totals since the last reset,
    and closed bars (book count per bar) for each of options.bar_durations.  It takes `max_gap_ms`
    like the real engine but counts only the resets it is given (time-gap resets are tested on the
    real engines: tests/unit/test_time_gaps.py)."""

    def __init__(self, options, max_gap_ms=None):
        self.options = options
        self.reset()

    def reset(self):
        self.books = 0
        self.volume = 0.0
        self.signed = 0.0
        self.resets = 0
        self.bars: dict[int, list] = {}  # duration -> [bar start ms, count]

    def get_state(self) -> bytes:
        return pickle.dumps((self.books, self.volume, self.signed, self.resets, self.bars))

    @classmethod
    def from_state(cls, data, options, max_gap_ms=None):
        e = cls(options)
        e.books, e.volume, e.signed, e.resets, e.bars = pickle.loads(data)
        return e

    def process(self, books, trades, resets=None, complete_before=None):
        # (complete_before: the ledger processes every row it is given at once, it holds nothing back)
        books = _columns(books, ("timestamp", "bid_px", "ask_px"))
        trades = _columns(trades, ("timestamp", "amount", "side"))
        events = [(int(t), 0, i) for i, t in enumerate(trades["timestamp"])]
        # a book row without time: the real engine holds it for the next book row; the ledger skips it
        events += [(int(t), 1, i) for i, t in enumerate(books["timestamp"]) if t is not None]
        resets = list(resets) if resets is not None else []
        events.sort()
        hf = {"timestamp": [], "mid": [], "books_since_reset": [], "volume_since_reset": [],
              "signed_volume": [], "resets": []}
        bars = {d: {"timestamp": [], "books": []} for d in self.options.bar_durations}
        for t, kind, i in events:
            while resets and resets[0] <= t:
                resets.pop(0)
                n = self.resets + 1
                self.reset()
                self.resets = n
            if kind == 0:
                self.volume += float(trades["amount"][i])
                self.signed += float(trades["amount"][i]) * (1 if trades["side"][i] == "buy" else -1)
                continue
            self.books += 1
            hf["timestamp"].append(t)
            hf["mid"].append((books["bid_px"][i][0] + books["ask_px"][i][0]) / 2)
            hf["books_since_reset"].append(self.books)
            hf["volume_since_reset"].append(self.volume)
            hf["signed_volume"].append(self.signed)
            hf["resets"].append(self.resets)
            for d in self.options.bar_durations:
                start = t - t % (d * 1000)
                cur = self.bars.get(d)
                if cur is not None and cur[0] != start:
                    bars[d]["timestamp"].append(cur[0])
                    bars[d]["books"].append(cur[1])
                    cur = None
                if cur is None:
                    cur = self.bars[d] = [start, 0]
                cur[1] += 1
        for _ in resets:
            n = self.resets + 1
            self.reset()
            self.resets = n
        ts = pa.timestamp("ms", tz="UTC")
        hf_t = pa.table({k: (pa.array(v, ts) if k == "timestamp" else pa.array(v, pa.float64() if k not in ("books_since_reset", "resets") else pa.int64()))
                         for k, v in hf.items()})
        bar_t = {d: pa.table({"timestamp": pa.array(b["timestamp"], ts), "books": pa.array(b["books"], pa.int64())})
                 for d, b in bars.items()}
        return _Result(hf_t, bar_t)


def _columns(table, names):
    """Columns as lists: of a table, or of the books and trades the ETL feeds (features/book_rows.py,
    trade_rows.py)."""
    if table is None:
        return {n: [] for n in names}
    if isinstance(table, (TradeRows, BookRows)):
        table = table.to_table() or pa.table({n: [] for n in names})
    return {n: table.column(n).to_pylist() for n in names}


class _Result:
    def __init__(self, hf, bars):
        self.hf, self.bars = hf, bars


def read_tree(root: Path, kind: str = "hf") -> pa.Table:
    """The whole hf (or bars) tree as one table via pyarrow.dataset with Hive partitioning, sorted."""
    import pyarrow.dataset as ds
    d = ds.dataset(root / kind, format="parquet", partitioning="hive")
    t = d.to_table()
    first = [c for c in ("interval", "exchange", "symbol", "date", "timestamp") if c in t.column_names]
    keys = first + [c for c in t.column_names if c not in first and not pa.types.is_nested(t.schema.field(c).type)]
    return t.sort_by([(k, "ascending") for k in keys])


def tables_equal(a: pa.Table, b: pa.Table) -> bool:
    """Same schema, same rows, same values; NaN equals NaN (features are NaN before warm-up)."""
    if not a.schema.equals(b.schema) or a.num_rows != b.num_rows:
        return False
    for x, y in zip(a.columns, b.columns):
        if pa.types.is_floating(x.type):
            if not np.array_equal(x.to_numpy(), y.to_numpy(), equal_nan=True):
                return False
        elif not x.equals(y):
            return False
    return True


def tree_files(root: Path) -> dict[str, pa.Table]:
    """relative path -> table of every visible part file under root."""
    return {str(p.relative_to(root)): pq.read_table(p) for p in sorted(root.rglob("part-*.parquet"))}




def etl_config(path: Path, data_dir: Path, features: dict | None = None, **etl) -> Path:
    """A config file for `fluxforge etl` / `fluxforge replay` subprocesses."""
    import yaml
    cfg = {"data_dir": str(data_dir), "host_id": "testhost",
           "logging": {"level": "INFO", "format": "json"},
           "etl": {"poll_interval": 0.2, **etl, "features": features or {}}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def fluxforge_cmd(*args: str) -> list[str]:
    import sys
    return [sys.executable, "-m", "fluxforge.cli", *args]


def as_book_messages(books: pa.Table, snapshot_every: int = 250) -> pa.Table:
    """Format 2 rows of a top-N book table: per symbol, a snapshot first, then deltas (changed
    levels, size 0 = removed; nonce / prev_nonce linked), and after every `snapshot_every`-th
    delta a snapshot of the same book with the same nonce (the rebuild compares it).  Receive
    times follow the message order, as one WebSocket stream's do."""
    out = []
    for sym in books.column("symbol").unique().to_pylist():
        t = books.filter(pc.equal(books.column("symbol"), sym))
        t = t.take(pa.array(np.argsort(t.column("timestamp").to_numpy(), kind="stable")))
        cols = t.to_pydict()
        rows = []
        prev = None
        for i in range(t.num_rows):
            cur = {s: dict(zip(cols[f"{s}_px"][i], cols[f"{s}_sz"][i])) for s in ("bid", "ask")}
            row = {k: cols[k][i] for k in ("exchange", "symbol", "timestamp")}
            row.update(recv_ns=cols["timestamp"][i] * 1_000_000 + 2_000_000 + 2 * i, nonce=1000 + i, checksum=None)
            snap = dict(row, kind="snapshot", prev_nonce=None,
                        **{f"{s}_{w}": list(cur[s]) if w == "px" else list(cur[s].values())
                           for s in ("bid", "ask") for w in ("px", "sz")})
            if prev is None:
                row = snap
            else:
                row.update(kind="delta", prev_nonce=999 + i)
                for s in ("bid", "ask"):
                    changed = [(p, q) for p, q in cur[s].items() if prev[s].get(p) != q]
                    changed += [(p, 0.0) for p in prev[s] if p not in cur[s]]
                    row[f"{s}_px"], row[f"{s}_sz"] = [p for p, _ in changed], [q for _, q in changed]
            rows.append(row)
            if prev is not None and i % snapshot_every == 0:
                rows.append(dict(snap, recv_ns=row["recv_ns"] + 1))
            prev = cur
        out.append(pa.Table.from_pylist(rows, schema=bronze.ORDERBOOK))
    return pa.concat_tables(out).sort_by("recv_ns")
