"""Rebuild bronze-shaped books and trades from the real Binance captures in shared/data.

Why: the differential tests must also run on real books.  The capture holds
diff-depth messages and one REST snapshot; Binance's sync rule (drop diffs with
u <= lastUpdateId, then apply in order, quantity 0 removes the level) yields the
book after every applied diff, of which the top `depth` levels become one row.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa

from fluxforge.bronze import schemas as bronze


def load(path: Path, depth: int = 20, symbol: str = "BTC/USDT") -> tuple[pa.Table, pa.Table]:
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    last_id = None
    pending = []
    rows = {k: [] for k in ("timestamp", "recv_ns", "nonce", "bid_px", "bid_sz", "ask_px", "ask_sz")}
    trades = {k: [] for k in ("timestamp", "recv_ns", "trade_id", "price", "amount", "side")}

    def apply(d, recv):
        for side, book in (("b", bids), ("a", asks)):
            for p, q in d[side]:
                p, q = float(p), float(q)
                if q == 0.0:
                    book.pop(p, None)
                else:
                    book[p] = q
        top_b = sorted(bids.items(), reverse=True)[:depth]
        top_a = sorted(asks.items())[:depth]
        rows["timestamp"].append(d["E"])
        rows["recv_ns"].append(recv)
        rows["nonce"].append(d["u"])
        rows["bid_px"].append([p for p, _ in top_b])
        rows["bid_sz"].append([q for _, q in top_b])
        rows["ask_px"].append([p for p, _ in top_a])
        rows["ask_sz"].append([q for _, q in top_a])

    with gzip.open(path, "rt") as fh:
        for line in fh:
            recv, _, payload = line.partition(" ")
            msg = json.loads(payload)
            if "lastUpdateId" in msg:
                last_id = msg["lastUpdateId"]
                bids.update({float(p): float(q) for p, q in msg["bids"]})
                asks.update({float(p): float(q) for p, q in msg["asks"]})
                for d, r in pending:
                    if d["u"] > last_id:
                        apply(d, r)
                pending = []
                continue
            data = msg.get("data", {})
            if data.get("e") == "depthUpdate":
                if last_id is None:
                    pending.append((data, int(recv)))
                elif data["u"] > last_id:
                    apply(data, int(recv))
            elif data.get("e") == "trade":
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
