"""What one symbol takes from one segment into the next, and its bytes in the checkpoint.

Why its own module: the carry is the checkpoint's per-symbol record of the feed (etl/engines.py
`SymbolFeed` makes and reads it); its fields and their serialisation change together, and a
checkpoint written before a field existed must still load (the field takes its default).
"""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field

import pyarrow as pa


def _ipc(table: pa.Table | None) -> str | None:
    if table is None or table.num_rows == 0:
        return None
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return base64.b64encode(sink.getvalue()).decode("ascii")


def _from_ipc(data: str | None) -> pa.Table | None:
    return None if data is None else pa.ipc.open_stream(base64.b64decode(data)).read_all()


@dataclass
class Carry:
    """What a symbol takes from one segment into the next (stored in the checkpoint)."""

    books: pa.Table | None = None
    trades: pa.Table | None = None
    resets: list[int] = field(default_factory=list)
    pending_reset: bool = False
    book_head: int | None = None   # newest exchange time seen per stream
    trade_head: int | None = None
    trade_ids: dict[str, int] = field(default_factory=dict)  # recent trade id -> exchange ms
    products: bytes | None = None  # trade_products.TradeProducts state
    tickers: pa.Table | None = None  # ticker rows at/after the watermark
    trade_clock: tuple[int, int] | None = None  # (exchange ms, receive ns) of the last-received trade
    book_recv: int | None = None  # newest receive ns of the book stream
    trade_break: int | None = None  # receive ns of the newest reset event (the trade clock stops there)

    def to_bytes(self) -> bytes:
        return json.dumps({"books": _ipc(self.books), "trades": _ipc(self.trades),
                           "resets": self.resets, "pending_reset": self.pending_reset,
                           "book_head": self.book_head, "trade_head": self.trade_head,
                           "trade_ids": self.trade_ids,
                           "products": self.products.decode() if self.products else None,
                           "tickers": _ipc(self.tickers),
                           "trade_clock": list(self.trade_clock) if self.trade_clock else None,
                           "book_recv": self.book_recv, "trade_break": self.trade_break}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Carry":
        d = json.loads(data) if data else {}
        return cls(_from_ipc(d.get("books")), _from_ipc(d.get("trades")),
                   [int(r) for r in d.get("resets", [])], bool(d.get("pending_reset", False)),
                   d.get("book_head"), d.get("trade_head"),
                   {str(k): int(v) for k, v in (d.get("trade_ids") or {}).items()},
                   d["products"].encode() if d.get("products") else None, _from_ipc(d.get("tickers")),
                   tuple(int(v) for v in d["trade_clock"]) if d.get("trade_clock") else None,
                   d.get("book_recv"), d.get("trade_break"))
