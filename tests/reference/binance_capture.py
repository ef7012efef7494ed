"""Rebuild bronze-shaped books and trades from the real Binance captures in shared/data.

Why: the differential tests must also run on real books.  The capture holds
diff-depth messages and one REST snapshot; Binance's sync rule (drop diffs with
u <= lastUpdateId, then apply in order, quantity 0 removes the level) yields the
book after every applied diff.  `replay` / `load_messages` give the bronze format 2
rows (snapshot + deltas) with this module's own full book after each; `load` gives
the top `depth` levels after each diff as one format-1-shaped row (a snapshot).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa

from fluxforge.bronze import schemas as bronze


def replay(path: Path):
    """Bronze format 2 rows of the capture's book, as the collector records them: the REST
    snapshot (kind 'snapshot', nonce = lastUpdateId, the exchange time of the first diff applied
    after it) and every diff Binance's rule applies (u > lastUpdateId; kind 'delta', nonce = u,
    prev_nonce = U - 1).  Yields (row, bids, asks): the row and this module's own full book
    (price -> size dicts, by Binance's documented rule, no trimming) after applying it."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    last_id = None
    pending = []

    def delta_row(d, recv):
        return {"timestamp": d["E"], "recv_ns": recv, "kind": "delta", "nonce": d["u"], "prev_nonce": d["U"] - 1,
                "checksum": None, "bid_px": [float(p) for p, _ in d["b"]], "bid_sz": [float(q) for _, q in d["b"]],
                "ask_px": [float(p) for p, _ in d["a"]], "ask_sz": [float(q) for _, q in d["a"]]}

    def apply(d):
        for side, book in (("b", bids), ("a", asks)):
            for p, q in d[side]:
                p, q = float(p), float(q)
                if q == 0.0:
                    book.pop(p, None)
                else:
                    book[p] = q

    with gzip.open(path, "rt") as fh:
        for line in fh:
            recv, _, payload = line.partition(" ")
            msg = json.loads(payload)
            if "lastUpdateId" in msg:
                last_id = msg["lastUpdateId"]
                bids.clear()
                asks.clear()
                bids.update({float(p): float(q) for p, q in msg["bids"]})
                asks.update({float(p): float(q) for p, q in msg["asks"]})
                later = [(d, r) for d, r in pending if d["u"] > last_id]
                snap = {"timestamp": later[0][0]["E"] if later else None, "recv_ns": int(recv), "kind": "snapshot",
                        "nonce": last_id, "prev_nonce": None, "checksum": None,
                        "bid_px": [float(p) for p, _ in msg["bids"]], "bid_sz": [float(q) for _, q in msg["bids"]],
                        "ask_px": [float(p) for p, _ in msg["asks"]], "ask_sz": [float(q) for _, q in msg["asks"]]}
                yield snap, bids, asks
                for d, r in later:
                    apply(d)
                    yield delta_row(d, r), bids, asks
                pending = []
                continue
            data = msg.get("data", {})
            if data.get("e") == "depthUpdate":
                if last_id is None:
                    pending.append((data, int(recv)))
                elif data["u"] > last_id:
                    apply(data)
                    yield delta_row(data, int(recv)), bids, asks


def load_messages(path: Path, symbol: str = "BTC/USDT") -> pa.Table:
    """The capture's book as a bronze format 2 orderbook table (see `replay`)."""
    rows = [row for row, _, _ in replay(path)]
    n = len(rows)
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    return pa.table({"exchange": ["binance"] * n, "symbol": [symbol] * n, **cols}, schema=bronze.ORDERBOOK)


def load(path: Path, depth: int = 20, symbol: str = "BTC/USDT") -> tuple[pa.Table, pa.Table]:
    """Top-`depth` books after every applied diff (format 1 shape, kind 'snapshot') and the trades."""
    rows = {k: [] for k in ("timestamp", "recv_ns", "nonce", "bid_px", "bid_sz", "ask_px", "ask_sz")}
    for msg, bids, asks in replay(path):
        if msg["kind"] != "delta":
            continue
        top_b = sorted(bids.items(), reverse=True)[:depth]
        top_a = sorted(asks.items())[:depth]
        for k in ("timestamp", "recv_ns", "nonce"):
            rows[k].append(msg[k])
        rows["bid_px"].append([p for p, _ in top_b])
        rows["bid_sz"].append([q for _, q in top_b])
        rows["ask_px"].append([p for p, _ in top_a])
        rows["ask_sz"].append([q for _, q in top_a])
    trades = {k: [] for k in ("timestamp", "recv_ns", "trade_id", "price", "amount", "side")}
    with gzip.open(path, "rt") as fh:
        for line in fh:
            recv, _, payload = line.partition(" ")
            data = json.loads(payload).get("data", {})
            if data.get("e") == "trade":
                trades["timestamp"].append(data["T"])
                trades["recv_ns"].append(int(recv))
                trades["trade_id"].append(str(data["t"]))
                trades["price"].append(float(data["p"]))
                trades["amount"].append(float(data["q"]))
                trades["side"].append("sell" if data["m"] else "buy")
    n, m = len(rows["timestamp"]), len(trades["timestamp"])
    books = pa.table({"exchange": ["binance"] * n, "symbol": [symbol] * n, "kind": ["snapshot"] * n,
                      "prev_nonce": [None] * n, "checksum": [None] * n, **rows}, schema=bronze.ORDERBOOK)
    trade_table = pa.table({"exchange": ["binance"] * m, "symbol": [symbol] * m, **trades}, schema=bronze.TRADES)
    return books, trade_table
