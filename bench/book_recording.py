"""What recording a book message costs the collector, format 2 (deltas) vs copying the top 50 levels.

In-process and deterministic, on the real Binance captures: every diff message of
../shared/data/binance-spot/btcusdt_20240808.gz is applied by ccxt's own binance
handler to a book seeded from the capture's REST snapshot, and recorded

* baseline (format 1): a plain ccxt OrderBook, then the top 50 levels a side copied
  into the column buffer (`BookBuffer.add`, what every update cost before);
* format 2: the collector's `RecordingOrderBook` (logging sides), then the message's
  levels handed to the buffer as one delta row (`BookBuffer.add_delta`).

Both include ccxt's own work on the message, which is the same; the ratio is
format 2 / baseline (target <= 1.0: recording deltas must not cost more).
Usage: `python bench/book_recording.py [--repeat 5]`
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import ccxt.pro  # noqa: E402
from ccxt.async_support.base.ws.order_book import OrderBook  # noqa: E402

from fluxforge.collector.book_tap import RecordingOrderBook, message_links  # noqa: E402
from fluxforge.collector.rows import BookBuffer  # noqa: E402

CAPTURE = REPO.parent / "shared" / "data" / "binance-spot" / "btcusdt_20240808.gz"


def load(path: Path) -> tuple[dict, list[dict]]:
    snapshot, diffs = None, []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            msg = json.loads(line.partition(" ")[2])
            if "lastUpdateId" in msg and snapshot is None:
                snapshot = msg
            elif msg.get("data", {}).get("e") == "depthUpdate":
                diffs.append(msg["data"])
    last = snapshot["lastUpdateId"]
    return snapshot, [d for d in diffs if d["u"] > last]


def seeded(cls, snapshot: dict):
    book = cls({}, 1000)
    book.reset({"bids": [[float(p), float(q)] for p, q in snapshot["bids"]],
                "asks": [[float(p), float(q)] for p, q in snapshot["asks"]],
                "nonce": snapshot["lastUpdateId"], "symbol": "BTC/USDT"})
    return book


def run_baseline(ex, snapshot, diffs) -> float:
    book, buf = seeded(OrderBook, snapshot), BookBuffer()
    t0 = time.process_time()
    for d in diffs:
        ex.handle_order_book_message(None, d, book)
        buf.add("binance", "BTC/USDT", book, 50, 1)
    return time.process_time() - t0


def run_deltas(ex, snapshot, diffs) -> float:
    book, buf = seeded(RecordingOrderBook, snapshot), BookBuffer()
    t0 = time.process_time()
    for d in diffs:
        ex.handle_order_book_message(None, d, book)
        bids, asks = book.take_logs()
        prev, checksum = message_links(d)
        buf.add_delta("binance", "BTC/USDT", book.get("timestamp"), 1, book.get("nonce"), prev, checksum, bids, asks)
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not CAPTURE.is_file():
        sys.exit(f"{CAPTURE} not found")
    snapshot, diffs = load(CAPTURE)
    ex = ccxt.pro.binance()
    base = min(run_baseline(ex, snapshot, diffs) for _ in range(args.repeat))
    new = min(run_deltas(ex, snapshot, diffs) for _ in range(args.repeat))
    n = len(diffs)
    print(f"[book recording] {n} real BTCUSDT diffs, best of {args.repeat}")
    print(f"      format 1 (ccxt apply + copy top 50): {base / n * 1e6:6.1f} us/message")
    print(f"      format 2 (ccxt apply + delta row)  : {new / n * 1e6:6.1f} us/message")
    print(f"      ratio format 2 / format 1          : {new / base:.2f}x   (target <= 1.0x)")


if __name__ == "__main__":
    main()
