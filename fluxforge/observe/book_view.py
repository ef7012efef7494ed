"""A segment's order book at a chosen time, rebuilt from its bronze book messages.

Why: with format 2 bronze (snapshot + deltas) a row is not a book any more; an operator
asking "what did the book look like at 12:00:03?" needs the same rebuild the ETL runs
(cython_ext/book_rebuild.pyx, applied in the ETL's order).  Used by
`fluxforge inspect SEGMENT --book-at TIME --symbol S`.  A segment that starts mid-stream
has no snapshot before its first deltas: until one arrives, the book is reported unknown.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..bronze import schemas as bronze


class BookViewError(Exception):
    """The book cannot be shown; str(self) says why."""


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from epoch ms or an ISO 8601 time (UTC if no zone)."""
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BookViewError(f"--book-at {text!r}: not epoch milliseconds or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def _books(seg: Path) -> pa.Table:
    from .inspection import InspectError, read_journal
    finished = seg / bronze.channel_file("orderbook", finished=True)
    journal = seg / bronze.channel_file("orderbook", finished=False)
    try:
        if finished.is_file():
            return pq.read_table(finished)
        if journal.is_file():
            return read_journal(journal)[0]
    except (pa.ArrowInvalid, OSError, InspectError) as e:  # a damaged file: say which, as inspect does
        raise BookViewError(f"{finished if finished.is_file() else journal}: cannot be read "
                            f"({str(e).splitlines()[0]}); `fluxforge inspect {seg}` says what is wrong") from None
    raise BookViewError(f"{seg}: no orderbook file")


def book_at(seg: str | Path, symbol: str, at_ms: int, depth: int = 20) -> dict[str, Any]:
    """The rebuilt book of `symbol` after every message with exchange time <= at_ms."""
    from ..etl.bronze_reader import _as_format2, fill_book_times
    from ..features.engine import FeatureEngine

    table = _books(Path(seg))
    table = table.filter(pc.equal(table.column("symbol"), symbol))
    if table.num_rows == 0:
        raise BookViewError(f"{seg}: no book rows for symbol {symbol!r}")
    exchanges = table.column("exchange").unique().to_pylist()
    table = fill_book_times(_as_format2(table))
    ts = pc.fill_null(table.column("timestamp"), np.iinfo(np.int64).max).to_numpy()
    table = table.take(pa.array(np.argsort(ts, kind="stable")))
    ts = np.sort(ts, kind="stable")
    upto = table.slice(0, int(np.searchsorted(ts, at_ms, side="right")))
    engine = FeatureEngine(hf_emit_interval=0.0)
    engine.process(upto)
    engine.flush()
    bid, bid_sz, ask, ask_sz = engine.book()
    stats = engine.stats()
    last = int(ts[len(upto) - 1]) if len(upto) else None
    return {"symbol": symbol, "exchange": exchanges[0] if len(exchanges) == 1 else exchanges,
            "at": _iso(at_ms), "last_message": _iso(last) if last is not None else None,
            "messages": len(upto), "synced": engine.book_synced,
            "bid_levels": len(bid), "ask_levels": len(ask),
            "bids": list(zip(bid[:depth].tolist(), bid_sz[:depth].tolist())),
            "asks": list(zip(ask[:depth].tolist(), ask_sz[:depth].tolist())),
            "counters": {k: v for k, v in stats.items() if k.startswith("book_")}}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def format_book(view: dict[str, Any]) -> str:
    lines = [f"{view['exchange']} {view['symbol']} at {view['at']} "
             f"(last message {view['last_message']}, {view['messages']} messages applied)"]
    if not view["synced"]:
        lines.append("  book unknown: no snapshot yet, or a gap since the last one")
        return "\n".join(lines)
    lines.append(f"  {view['bid_levels']} bid levels, {view['ask_levels']} ask levels in the rebuilt book")
    lines.append(f"  {'bid size':>14} {'bid':>14} | {'ask':<14} {'ask size':<14}")
    for i in range(max(len(view["bids"]), len(view["asks"]))):
        b = view["bids"][i] if i < len(view["bids"]) else None
        a = view["asks"][i] if i < len(view["asks"]) else None
        left = f"{b[1]:>14g} {b[0]:>14g}" if b else " " * 29
        right = f"{a[0]:<14g} {a[1]:<14g}" if a else ""
        lines.append(f"  {left} | {right}".rstrip())
    c = view["counters"]
    lines.append(f"  snapshots {c['book_snapshots']}, deltas {c['book_deltas']}, gaps {c['book_gaps']}, "
                 f"mismatches {c['book_mismatches']}, evicted {c['book_evicted']}")
    return "\n".join(lines)
