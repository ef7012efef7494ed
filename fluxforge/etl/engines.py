"""Per-(exchange, symbol) streaming feature state, fed in time order across segments.

Why this layer: the FeatureEngine (kernels branch) computes features for a chunk
of books and trades and guarantees N chunks == 1 chunk.  This module makes the
chunks it receives exactly those a single merged stream would give:

- books arrive in record batches; the rows at the newest timestamp of a batch are
  held back until the next batch (or the end of the segment), so trades and books
  with equal times always meet in the same chunk (trades first, as the engine merges);
- a `gap`/`resync`/`reconnect` event row becomes a reset at the exchange time of the
  first book received at or after the event (event times are local-clock, book
  times exchange-clock, so the receive time orders them); an event with no later
  book in the segment stays *pending* and is carried in the checkpoint to the next
  segment.

`EngineBank` owns all symbols' engines and serialises them for checkpoints.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..config import FeatureOptions
from .bronze_reader import Books, Key, Trades, empty_trades

NO_EVENT = -1  # a pending reset carried from an earlier segment: any book resolves it


def options_fingerprint(options: FeatureOptions) -> str:
    """Stable hash of the feature options: a checkpoint is only valid for the options it was made with."""
    blob = json.dumps(options.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _engine_class():
    from ..features import FeatureEngine  # kernels branch; imported lazily (heavy, compiled)
    return FeatureEngine


def _engine_books(books: Books) -> dict[str, np.ndarray]:
    return {"timestamp": books.timestamp, "bid_px": books.bid_px, "bid_sz": books.bid_sz,
            "ask_px": books.ask_px, "ask_sz": books.ask_sz}


def _engine_trades(trades: Trades) -> dict[str, np.ndarray]:
    return {"timestamp": trades.timestamp, "price": trades.price, "amount": trades.amount, "side": trades.side}


@dataclass
class FeatureOutput:
    """Accumulated engine results of one symbol for one segment."""

    hf: list[pa.Table] = field(default_factory=list)
    bars: dict[int, list[pa.Table]] = field(default_factory=dict)

    def add(self, result) -> None:
        if result.hf is not None and result.hf.num_rows:
            self.hf.append(result.hf)
        for duration, table in (result.bars or {}).items():
            if table is not None and table.num_rows:
                self.bars.setdefault(int(duration), []).append(table)


class SymbolFeed:
    """Feeds one symbol's engine for one segment (see module docstring for the rules)."""

    def __init__(self, engine, levels: int, trades: Trades | None, events_recv_ns: list[int], pending: bool):
        self.engine = engine
        self.levels = levels
        self.trades = trades if trades is not None else empty_trades()
        self._trade_pos = 0
        self._held: Books | None = None
        self._events = ([NO_EVENT] if pending else []) + sorted(events_recv_ns)
        self._resets: list[int] = []
        self.output = FeatureOutput()
        self.books_fed = 0

    def push(self, books: Books) -> None:
        self._resolve_resets(books)
        if self._held is not None and len(self._held):
            books = Books.concat([self._held, books])
            order = np.argsort(books.timestamp, kind="stable")
            books = books.take(order)
        if not len(books):
            return
        cut = int(np.searchsorted(books.timestamp, books.timestamp[-1], side="left"))
        self._held = books.take(slice(cut, None))
        if cut:
            self._feed(books.take(slice(0, cut)), until=int(books.timestamp[cut]))

    def finish(self) -> bool:
        """Feed everything left; return True if a reset is still pending (no book after its event)."""
        held, self._held = self._held, None
        if held is not None or self._trade_pos < len(self.trades) or self._resets:
            self._feed(held, until=None)
        return bool(self._events)

    def _resolve_resets(self, books: Books) -> None:
        """Turn events into reset times: exchange time of the first book received at/after each event."""
        if not self._events or not len(books):
            return
        order = np.argsort(books.recv_ns, kind="stable")
        recv_sorted = books.recv_ns[order]
        remaining = []
        for ev in self._events:
            i = int(np.searchsorted(recv_sorted, ev, side="left"))
            if i < len(recv_sorted):
                self._resets.append(int(books.timestamp[order[i]]))
            else:
                remaining.append(ev)
        self._events = remaining
        self._resets.sort()

    def _feed(self, books: Books | None, until: int | None) -> None:
        """Process books plus every trade and reset with time < `until` (all if None)."""
        if until is None:
            t_end, r_end = len(self.trades), len(self._resets)
        else:
            t_end = int(np.searchsorted(self.trades.timestamp, until, side="left"))
            r_end = int(np.searchsorted(np.asarray(self._resets, dtype=np.int64), until, side="left"))
        trades = self.trades.take(slice(self._trade_pos, t_end))
        self._trade_pos = max(self._trade_pos, t_end)
        resets = np.asarray(self._resets[:r_end], dtype=np.int64)
        del self._resets[:r_end]
        if books is None:
            books = _empty_books(self.levels)
        if not len(books) and not len(trades) and not len(resets):
            return
        self.books_fed += len(books)
        self.output.add(self.engine.process(_engine_books(books), _engine_trades(trades),
                                            resets=resets if len(resets) else None))


def _empty_books(levels: int) -> Books:
    z = np.zeros(0, dtype=np.int64)
    e = np.zeros((0, levels))
    return Books(z, z.copy(), e, e.copy(), e.copy(), e.copy())


@dataclass
class SymbolState:
    engine: object
    pending_reset: bool = False


class EngineBank:
    """All symbols' engines; `snapshot()`/`restore()` are what the checkpoint stores."""

    def __init__(self, options: FeatureOptions, engine_class=None):
        self.options = options
        self.fingerprint = options_fingerprint(options)
        self.engine_class = engine_class  # None: fluxforge.features.FeatureEngine
        self.symbols: dict[Key, SymbolState] = {}

    def _cls(self):
        return self.engine_class or _engine_class()

    def state(self, key: Key) -> SymbolState:
        st = self.symbols.get(key)
        if st is None:
            st = self.symbols[key] = SymbolState(self._cls()(self.options))
        return st

    def snapshot(self) -> dict[Key, tuple[bytes, bool]]:
        return {k: (st.engine.get_state(), st.pending_reset) for k, st in sorted(self.symbols.items())}

    def restore(self, snapshot: dict[Key, tuple[bytes, bool]]) -> None:
        cls = self._cls()
        self.symbols = {k: SymbolState(cls.from_state(state, self.options), pending)
                        for k, (state, pending) in snapshot.items()}
