"""Per-(exchange, symbol) streaming feature state, fed in time order across segments.

Why this layer: the FeatureEngine (fluxforge/features/engine.py) computes features for a
chunk of books and trades, merging them by time (trades first at equal times),
and guarantees N chunks == 1 chunk *provided every chunk is later in time than
the previous one* (rows older than what it already processed are dropped as
late).  Bronze does not arrive like that: books stream in record batches, all
trades of a segment are read at once, and segments are cut by *receive* time, so
the first rows of segment k+1 can be older (exchange time) than the last rows of
segment k.  This module makes the chunks what a single merged stream would give:

- each book batch is fed together with the trades and resets before its cut time;
  rows from the cut on are held back for the next batch;
- books and trades are separate streams that lag each other (a busy collector turns
  book updates into rows more slowly than trades), so the *watermark* is the newest
  exchange time both streams of the symbol have reached so far (their *heads*, kept
  in the checkpoint), minus `reorder_ms`; rows at or after it are *carried* into the
  next segment, so rows up to `reorder_ms` older than the slower stream's head still
  merge in order.  A *quiet* trade stream is not a lagging one: if the symbol's books
  were received for R ns after its last trade (exchange time t), the trade stream has
  reached t + R (its delay, receive time minus exchange time, did not grow by more than
  the window, or its rows are late), but never further than the books -- so a symbol
  that trades every few seconds does not hold its books back for the gap
  (`_trade_reach`); after a reset event (a reconnect: the exchange may resend what the
  socket missed) the stream is only at its head until its next trade.  The watermark
  is never more than `MAX_CARRY_FACTOR * reorder_ms` behind the faster head, so a
  silent stream holds nothing back for long and the carry stays small.  The engine is
  told the watermark (`complete_before`): the books before it are processed at once
  rather than when the symbol's next trade comes;
- ticker rows (features/ticker/) ride along like trades: fed with the books and trades
  before each cut, carried from the watermark on; they do not move the watermark unless
  the symbol has neither books nor trades (a ticker-only symbol);
- a trade whose id the symbol already had (redelivered after a reconnect) is dropped
  and counted (`trade_dedupe`; the recent ids travel in the carry);
- a `gap`/`resync`/`reconnect` event row becomes a reset at the exchange time of
  the first book received at or after the event (event times are local-clock,
  book times exchange-clock, so the receive time orders them); an event with no
  later book in the segment stays *pending* into the next segment;
- a hole in exchange time longer than `etl.max_gap_seconds` is a reset too: the engines find
  it themselves (features/time_gaps.py: books in the book engine, trades in the trade
  products), since only they see their stream in order across chunks and checkpoints.

`EngineBank` owns all symbols' engines and carries and serialises them for checkpoints.
"""
from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .._kernels.row_arrays import all_timed, search_left, time_max
from ..config import DEFAULT_MAX_GAP_MS, FeatureOptions, TradeOptions
from ..features import book_rows
from ..features.book_rows import BookRows
from ..features.trade_rows import TradeRows
from .bronze_reader import Key
from .carry import Carry
from .ticker_products import TICKER_ISSUE_KINDS, TICKER_ISSUES
from .ticker_rows import TickerRows
from .trade_dedupe import SeenIds, new_ids

NO_EVENT = -1  # a pending reset carried from an earlier segment: any book resolves it
MAX_CARRY_FACTOR = 12  # carry at most 12 reorder windows (1 minute by default) behind the newest row


def options_fingerprint(options: FeatureOptions, trades: TradeOptions | None = None,
                        overrides: dict | None = None, max_gap_ms: int | None = None) -> str:
    """Stable hash of the feature (and trade) options: a checkpoint is only valid for the options it was made with."""
    blob = json.dumps(options.model_dump(mode="json"), sort_keys=True).encode()
    blob += f"max_gap_ms={max_gap_ms}".encode()
    if trades is not None:
        blob += json.dumps(trades.model_dump(mode="json"), sort_keys=True).encode()
    if overrides:
        blob += json.dumps(overrides, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _default_engine_class():
    from ..features.engine import FeatureEngine  # compiled kernels: imported when first needed
    return FeatureEngine


@dataclass
class FeatureOutput:
    """Accumulated engine results of one symbol for one segment."""

    hf: list[pa.Table] = field(default_factory=list)
    bars: dict[int, list[pa.Table]] = field(default_factory=dict)
    products: dict[tuple[str, int], list[pa.Table]] = field(default_factory=dict)  # trade_products.Products

    def add(self, result) -> None:
        for key, table in (getattr(result, "products", None) or {}).items():
            if table.num_rows:
                self.products.setdefault(key, []).append(table)
        if result.hf is not None and result.hf.num_rows:
            self.hf.append(result.hf)
        for duration, table in (result.bars or {}).items():
            if table is not None and table.num_rows:
                self.bars.setdefault(int(duration), []).append(table)


class SymbolFeed:
    """Feeds one symbol's engine for one segment (see the module docstring for the rules)."""

    def __init__(self, engine, carry: Carry, events_recv_ns: list[int], reorder_ms: int):
        self.engine = engine
        self.reorder_ms = reorder_ms
        self.new_trades = self.untimed = self.duplicate_trades = self.new_tickers = self.untimed_tickers = 0
        self._trade_ids = SeenIds(carry.trade_ids)
        self.trades, self._trade_pos = TradeRows.from_table(carry.trades), 0  # numpy: features/trade_rows.py
        self._trade_head = _later(carry.trade_head, int(self.trades.ts[-1]) if len(self.trades) else None)
        self._trade_clock, self._book_recv = carry.trade_clock, carry.book_recv
        self._trade_break = carry.trade_break
        self.tickers, self._ticker_pos = TickerRows.from_table(carry.tickers), 0  # numpy: etl/ticker_rows.py
        self._held = BookRows.from_table(carry.books)  # numpy: features/book_rows.py
        self._events = [NO_EVENT] if carry.pending_reset else []
        self.add_events(events_recv_ns)
        self._resets = sorted(carry.resets)
        self._fed_until: int | None = None
        self._book_head = carry.book_head
        self.output = FeatureOutput()
        self.books_fed = 0
        self._late_before = _late_count(engine)
        self._tickers_before = _ticker_counts(engine)

    @property
    def late_dropped(self) -> int:
        """Rows the engine dropped as older than what it had processed, during this segment."""
        return _late_count(self.engine) - self._late_before

    @property
    def ticker_issues(self) -> dict[str, int]:
        """Ticker rows of this segment per TICKER_ISSUE_KINDS: dropped (late, duplicate, untimed) or kept
        without a mid (crossed, missing_side)."""
        after = _ticker_counts(self.engine)
        return {k: self.untimed_tickers if k == "untimed" else after[k] - self._tickers_before[k]
                for k in TICKER_ISSUE_KINDS}

    def add_trades(self, trades: TradeRows, untimed: int = 0) -> None:
        """More of the segment's trades (with exchange time, sorted: trade_rows.by_symbol) and how many
        it had without one: all at once for a segment, or chunk by chunk when the segment is fed in
        the pieces the live path read (etl/chunk_log.py)."""
        self.new_trades += len(trades) + untimed
        self.untimed += untimed
        if not len(trades):
            return
        keep, duplicates = new_ids(trades.ids, trades.ts, self._trade_ids)
        if duplicates:
            trades = trades.take(keep)
        self.duplicate_trades += duplicates
        self._trade_clock = _last_received(self._trade_clock, trades)
        self.trades, self._trade_pos = self.trades.slice(self._trade_pos).then(trades), 0
        self._trade_head = _later(self._trade_head, int(self.trades.ts[-1]) if len(self.trades) else None)

    def add_tickers(self, tickers: TickerRows, untimed: int = 0) -> None:
        """More of the segment's ticker rows (with exchange time, sorted: ticker_rows.by_symbol) and
        how many it had without one (counted, not used)."""
        self.new_tickers += len(tickers) + untimed
        self.untimed_tickers += untimed
        if len(tickers):
            self.tickers, self._ticker_pos = self.tickers.slice(self._ticker_pos).then(tickers), 0

    def add_events(self, events_recv_ns: list[int]) -> None:
        """More reset events (receive ns) of this symbol, resolved against the books pushed next."""
        if events_recv_ns:
            self._events = sorted(self._events + [int(e) for e in events_recv_ns])
            self._trade_break = _later(self._trade_break, max(int(e) for e in events_recv_ns))

    def take_output(self) -> FeatureOutput:
        """The rows emitted since the last call (the live path publishes them per chunk)."""
        out, self.output = self.output, FeatureOutput()
        return out

    def push(self, books: BookRows) -> None:
        """More of the segment's book rows (of this symbol, sorted: etl/book_rows.py)."""
        if not len(books):
            return
        self._resolve_resets(books)
        if not all_timed(books.ts):
            timed = books.ts != book_rows.NULL
            # rows the reader could not time (a REST snapshot that ended its segment): the engine
            # holds them for the time of the next book row; they never move the watermark
            self.output.add(self.engine.process(books.take(~timed), None))
            books = books.take(timed)
        if len(books):
            self._book_recv = _later(self._book_recv, time_max(books.recv))
        books = self._held.then(books)
        if not len(books):
            return
        self._book_head = _later(self._book_head, int(books.ts[-1]))
        self._held = self._feed_before(books, self._watermark())

    def finish(self) -> Carry:
        """Feed what is older than the watermark; return the carry for the next segment."""
        books = self._held
        if self._book_head is not None or self._trade_head is not None or len(self.tickers):
            books = self._feed_before(books, self._watermark())
        return Carry(books.to_table(),
                     self.trades.slice(self._trade_pos).to_table(),
                     list(self._resets), bool(self._events), self._book_head, self._trade_head,
                     self._trade_ids.ids, tickers=self.tickers.slice(self._ticker_pos).to_table(),
                     trade_clock=self._trade_clock, book_recv=self._book_recv, trade_break=self._trade_break)

    def _watermark(self) -> int:
        """Everything older than this has arrived (up to `reorder_ms` of lateness)."""
        heads = [t for t in (self._book_head, self._trade_head) if t is not None] or [int(self.tickers.ts[-1])]
        newest = max(heads) - MAX_CARRY_FACTOR * self.reorder_ms
        if len(heads) < 2:  # one stream not seen yet: it may only be lagging
            return newest
        return max(min(self._book_head, self._trade_reach()) - self.reorder_ms, newest)

    def _trade_reach(self) -> int:
        """How far the trade stream has got: its head, or -- when books were received after its last
        trade -- that trade's exchange time plus the receive time since, up to the book head (the
        module docstring).  Receive minus receive: the collector's clock offset cancels out, and a
        clock step moves it no further than the books.  A quiet stream is one whose connection is
        up: after a gap/resync/reconnect event received since its last trade (the collector's
        restart, a dropped socket -- an exchange may resend the missed trades on resubscribe), the
        stream is only as far as its head until its next trade."""
        if self._trade_clock is None or self._book_recv is None:
            return self._trade_head
        t, r = self._trade_clock
        if self._book_recv <= r or (self._trade_break is not None and self._trade_break >= r):
            return self._trade_head
        return max(self._trade_head, min(self._book_head, t + (self._book_recv - r) // 1_000_000))

    def _resolve_resets(self, books: BookRows) -> None:
        """Turn events into reset times: exchange time of the first book received at/after each event."""
        if not self._events:
            return
        timed = books.ts != book_rows.NULL
        recv = books.recv[timed]  # the first book *with* exchange time
        order = np.argsort(recv, kind="stable")
        recv_sorted = recv[order]
        ts = books.ts[timed]
        remaining = []
        for ev in self._events:
            i = int(np.searchsorted(recv_sorted, ev, side="left"))
            if i < len(recv_sorted):
                self._resets.append(int(ts[order[i]]))
            else:
                remaining.append(ev)
        self._events = remaining
        self._resets.sort()

    def _feed_before(self, books: BookRows, until: int) -> BookRows:
        """Process books, trades and resets with time < `until`; return the books held back."""
        if self._fed_until is not None:
            until = max(until, self._fed_until)  # never go back in time
        cut = search_left(books.ts, until)
        t_end = search_left(self.trades.ts, until)
        r_end = bisect.bisect_left(self._resets, until)  # a sorted list of ints
        k_end = search_left(self.tickers.ts, until)
        if cut or t_end > self._trade_pos or r_end or k_end > self._ticker_pos:
            trades = self.trades.slice(self._trade_pos, max(self._trade_pos, t_end))
            self._trade_pos = max(self._trade_pos, t_end)
            extra = {}
            if k_end > self._ticker_pos:
                extra["tickers"] = self.tickers.slice(self._ticker_pos, k_end)
                self._ticker_pos = k_end
            resets = self._resets[:r_end]
            del self._resets[:r_end]
            chunk = books.slice(0, cut)
            self.books_fed += cut
            # every row before `until` is in this call or an earlier one: the engine need not hold
            # back books after the symbol's last trade (nor trades after its last book) until the
            # other stream passes them -- the watermark already waited for both
            self.output.add(self.engine.process(chunk, trades, resets=resets or None, complete_before=until, **extra))
            self._fed_until = until
        return books.slice(cut)


def _late_count(engine) -> int:
    stats = getattr(engine, "stats", None)
    return int(stats().get("late_dropped", 0)) if stats is not None else 0


def _ticker_counts(engine) -> dict[str, int]:
    stats = getattr(engine, "ticker_stats", None)  # a PairedEngine; a bare book engine has no tickers
    counts = stats() if stats is not None else {}
    return {kind: int(counts.get(key, 0)) for kind, key in TICKER_ISSUES.items()}


def _last_received(clock: tuple[int, int] | None, trades: TradeRows) -> tuple[int, int] | None:
    """(exchange ms, receive ns) of the trade received last, `clock` or a later one (rows of one
    message share a receive time: the newest exchange time among them)."""
    if not len(trades):
        return clock
    r = time_max(trades.recv)
    if clock is not None and r < clock[1]:
        return clock
    t = int(trades.ts[trades.recv == r].max())
    return (max(t, clock[0]), r) if clock is not None and r == clock[1] else (t, r)


def _later(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class SymbolState:
    engine: object
    carry: Carry = field(default_factory=Carry)
    products: object = None  # trade_products.TradeProducts (None: no trade products)


class EngineBank:
    """All symbols' engines and carries; `snapshot()`/`restore()` are what the checkpoint stores.

    `restore` keeps the snapshot's bytes and builds a symbol's engines only when `state()` first
    hands them out: a bank restored only in case it is needed -- the ETL's after the live path
    handed it a segment, whose engines the live path goes on with -- costs nothing until it is, and
    `snapshot()` gives an untouched symbol's bytes back as they were."""

    def __init__(self, options: FeatureOptions, engine_class=None, reorder_ms: int = 5000,
                 trade_options: TradeOptions | None = None, symbol_overrides: dict | None = None,
                 max_gap_ms: int | None = DEFAULT_MAX_GAP_MS):
        self.options = options
        self.reorder_ms = reorder_ms
        self.trade_options = trade_options or TradeOptions()
        self.symbol_overrides = symbol_overrides or {}  # "exchange:SYMBOL" -> etl.trades options
        self.max_gap_ms = max_gap_ms  # etl.max_gap_seconds: a longer hole in a stream resets it
        self.fingerprint = options_fingerprint(options, self.trade_options, self.symbol_overrides, max_gap_ms)
        self.engine_class = engine_class  # None: fluxforge.features.FeatureEngine
        self.symbols: dict[Key, SymbolState] = {}  # the symbols whose engines are built
        self._stored: dict[Key, tuple[bytes, bytes]] = {}  # restored, not built yet
        self.handed_out = 0  # state() calls: a feed mutates what it is handed (replay.run_or_skip reads it)

    def restored(self, snapshot: dict[Key, tuple[bytes, bytes]]) -> "EngineBank":
        """A bank with these options in the state of `snapshot`, one this process took (unchecked)."""
        bank = EngineBank(self.options, self.engine_class, self.reorder_ms, self.trade_options, self.symbol_overrides,
                          self.max_gap_ms)
        bank.restore(snapshot, checked=False)
        return bank

    def _cls(self):
        return self.engine_class or _default_engine_class()

    def keys(self) -> list[Key]:
        """Every symbol the bank has state of, built or not."""
        return sorted({*self.symbols, *self._stored})

    def state(self, key: Key) -> SymbolState:
        self.handed_out += 1
        st = self.symbols.get(key)
        if st is None:
            stored = self._stored.get(key)
            st = self.symbols[key] = self._built(key, stored) if stored is not None else \
                SymbolState(self._cls()(self.options, max_gap_ms=self.max_gap_ms), products=self._products(key))
            self._stored.pop(key, None)  # (after the build: one that fails keeps the bytes)
        return st

    def _products(self, key: Key, state: bytes | None = None):
        from .trade_products import TradeProducts, options_for  # compiled kernels: imported when first needed
        opts = options_for(self.trade_options, self.symbol_overrides, key)
        if state is None:
            return TradeProducts(opts, self.max_gap_ms)
        return TradeProducts.from_state(state, opts, self.max_gap_ms)

    def _built(self, key: Key, stored: tuple[bytes, bytes]) -> SymbolState:
        state, carry_bytes = stored
        carry = Carry.from_bytes(carry_bytes)
        return SymbolState(self._cls().from_state(state, self.options, max_gap_ms=self.max_gap_ms), carry,
                           self._products(key, carry.products))

    def snapshot(self) -> dict[Key, tuple[bytes, bytes]]:
        out = dict(self._stored)
        for k, st in self.symbols.items():
            st.carry.products = st.products.get_state() if st.products is not None else None
            out[k] = (st.engine.get_state(), st.carry.to_bytes())
        return dict(sorted(out.items()))

    def restore(self, snapshot: dict[Key, tuple[bytes, bytes]], *, checked: bool = True) -> None:
        """The state of `snapshot`.  checked: each symbol's engines are built now, so a snapshot that
        does not load (a corrupt checkpoint) is a ValueError here, not at the symbol's next row;
        unchecked (one this process just took), they are built when first handed out."""
        self.symbols, self._stored = {}, {}
        if checked:
            for k, stored in snapshot.items():
                self.symbols[k] = self._built(k, stored)
        else:
            self._stored = dict(snapshot)

    def late_dropped(self) -> dict[Key, int]:
        """Rows each symbol's book engine dropped as late, in all (its counters travel in the checkpoint);
        read from the stored bytes of a symbol not built (as often as a segment ends: no building)."""
        out = {}
        counted = getattr(self._cls(), "late_dropped_in", None)
        for key in self.keys():
            st = self.symbols.get(key)
            if st is None and counted is not None:
                out[key] = int(counted(self._stored[key][0]))
            elif (stats := getattr((st or self.state(key)).engine, "stats", None)) is not None:
                out[key] = int(stats().get("late_dropped", 0))
        return out
