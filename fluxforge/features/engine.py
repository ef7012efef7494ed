"""The feature engine API: bronze books + trades (Arrow) -> hf rows and time bars (Arrow).

Why this module: it is the contract the ETL and the demo consume (TEAM.md,
"Feature engine API").  The arithmetic lives in the Cython `BookEngine`
(cython_ext/book_engine.pyx); this module selects and orders the input columns,
keeps the per-symbol streaming state (including events held back at a chunk's
last millisecond, so N chunks give exactly the rows of one chunk), and builds
typed output tables.  docs/features.md defines every column.

    result = compute(books, trades, hf_emit_interval=0)     # one shot, flushes open bars
    engine = FeatureEngine(options)                          # streaming, per (exchange, symbol)
    part = engine.process(books_chunk, trades_chunk, resets=[...])
    engine = FeatureEngine(options, max_gap_ms=60_000)        # + a reset after each 60 s hole in books
    blob = engine.get_state(); engine = FeatureEngine.from_state(blob, options)
"""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from . import book_blocks, book_rows, input_tables, layout as feature_layout, trade_rows
from .book_rows import BookRows
from .pending_tables import PendingTable
from .time_gaps import GapClock
from .trade_rows import TradeRows
from .._kernels.book_engine import BookEngine
from .._kernels.book_rebuild import BookRebuild
from .._kernels.row_arrays import all_timed, is_sorted, search_left
from ..config import FeatureOptions

STATE_VERSION = 2
_STATS = ("null_timestamp_dropped", "late_dropped")
ST_SYNCED, ST_RESYNC = 1, 32  # BookRebuild.process status flags (cython_ext/book_rebuild.pyx)
BLOCK_BOOKS = 4096  # book rows per rebuild + kernel call (FeatureEngine._run)


@dataclass
class FeatureResult:
    """`hf`: one row per emitted snapshot; `bars`: duration seconds -> closed bars (when the
    engine's `deferred` is set: PendingTables, and only the durations that closed a bar); `stats`:
    the engine's counters after the chunk (left empty when deferred: the ETL reads `engine.stats()`
    when it needs them)."""

    hf: pa.Table | PendingTable
    bars: dict[int, pa.Table | PendingTable]
    stats: dict[str, int] = field(default_factory=dict)


def resolve_options(options: FeatureOptions | dict | None = None, **overrides: Any) -> FeatureOptions:
    """A FeatureOptions from an instance / dict plus keyword overrides (validated)."""
    if isinstance(options, FeatureOptions):
        base = options.model_dump()
    else:
        base = dict(options or {})
    base.update(overrides)
    return FeatureOptions(**base)


def _ipc(table: pa.Table) -> str:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue()).decode("ascii")


def _from_ipc(data: str) -> pa.Table:
    return pa.ipc.open_stream(base64.b64decode(data)).read_all()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class FeatureEngine:
    """Streaming features of one (exchange, symbol): feed chunks in time order.

    Bars are returned only once closed.  Events at a chunk's last timestamp are
    held back until a later chunk (or `flush()`) so that trades at equal times
    still precede the snapshot: N chunks give the same rows as one chunk.
    `max_gap_ms`: a book row more than this after the previous one is a reset at its time
    (features/time_gaps.py); None: only the given resets and resyncs reset.
    """

    def __init__(self, options: FeatureOptions | dict | None = None, *, max_gap_ms: int | None = None,
                 **overrides: Any) -> None:
        self.options = resolve_options(options, **overrides)
        self._gaps = GapClock(max_gap_ms)  # book rows this far apart reset like an event (etl.max_gap_seconds)
        self._kernel = BookEngine(**feature_layout.kernel_args(self.options))
        self._hf = feature_layout.HfBuilder(self.options)
        self._rebuild = BookRebuild(**feature_layout.rebuild_args(self.options))
        self._pending_books = book_rows.EMPTY
        self._pending_trades = trade_rows.EMPTY
        self._untimed_books = book_rows.EMPTY
        self._pending_resets: list[int] = []
        self._stats = dict.fromkeys(_STATS, 0)
        self.deferred = False  # results as PendingTables, built per chunk for all symbols (features/pending_tables.py)

    @property
    def columns(self) -> list[str]:
        """hf column names for these options."""
        return feature_layout.hf_names(self.options)

    def stats(self) -> dict[str, int]:
        """Counters since creation: books, trades, crossed, one_sided, resets, dropped rows,
        and the book rebuild's (book_messages, book_mismatches, book_gaps, book_evicted, ...)."""
        return {**self._kernel.stats(), **self._rebuild.stats(), **self._stats}

    @property
    def book_synced(self) -> bool:
        """Whether the rebuilt book is known (a snapshot arrived and no gap since)."""
        return self._rebuild.synced

    def book(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rebuilt book after the last processed message, best first: (bid_px, bid_sz, ask_px, ask_sz)."""
        return self._rebuild.levels()

    def reset(self) -> None:
        """Forget all stateful features now (as a reset event would)."""
        self._kernel.reset()

    def process(self, books: BookRows | pa.Table | None, trades: TradeRows | pa.Table | None = None,
                resets: Iterable[int] | None = None, complete_before: int | None = None) -> FeatureResult:
        """Features of one chunk: hf rows for emitted snapshots, bars closed by this chunk.

        `complete_before` (ms): the caller has given every book and trade with an earlier time
        (the ETL's watermark), so the books before it are processed now instead of waiting for
        the next trade; trades after the last book still wait for the books.  Books: `BookRows`
        (the ETL's) or a table; trades: `TradeRows` (timed and sorted: the ETL's) or a table."""
        if not isinstance(books, BookRows):
            books = BookRows.from_table(input_tables.normalise(books, "books"))
        books = _time_sorted(self._time_untimed(books))  # every row timed: the untimed ones wait
        bt = books.ts
        if not isinstance(trades, TradeRows):
            table, _, nt = input_tables.sorted_valid_time(input_tables.normalise(trades, "trades"))
            trades = TradeRows.from_table(table)
            self._stats["null_timestamp_dropped"] += nt
        last = self._kernel.last_ts
        if last is not None:
            (books, bt), (trades, _) = self._drop_late(books, bt, last), self._drop_late(trades, trades.ts, last)
        if len(self._pending_books):
            books = self._pending_books.then(books)
            bt = books.ts
        trades = self._pending_trades.then(trades)
        tt = trades.ts
        self._pending_resets = sorted(set(self._pending_resets) | {int(r) for r in (resets or ())})
        # Hold back everything from the earlier of the two streams' last times: a later chunk
        # may still bring events of the lagging stream up to there (and trades at equal times
        # must precede the snapshot).  Tables are sorted, so the held rows are a suffix.
        last_book = int(bt[-1]) if len(bt) else None
        cut = min((t for t in (last_book, int(tt[-1]) if len(tt) else None) if t is not None), default=None)
        if cut is None:
            self._pending_books, self._pending_trades = books, trades
            return self._result([], books, [])
        if complete_before is not None and last_book is not None:
            # no trade before `complete_before` can still come: the books need not wait for the next
            # trade.  Trades after the last book still wait for the books (a lagging book stream
            # must not find them processed and be dropped as late).
            cut = max(cut, min(int(complete_before), last_book + 1))
        nb = search_left(bt, cut)
        books, self._pending_books = books.slice(0, nb), books.slice(nb)
        nt = search_left(tt, cut)
        trades, self._pending_trades = trades.slice(0, nt), trades.slice(nt)
        return self._run(books, trades, bars_flush=False)

    def _time_untimed(self, books: BookRows) -> BookRows:
        """Book rows without exchange time (a REST snapshot) take the time of the next timed book
        row (docs/features.md, "Book rebuild").  The reader does that within a segment; rows with
        no timed row after them yet (a segment that ended right after a snapshot) wait here for
        the next chunk instead of being dropped -- dropping a snapshot would leave the book unknown."""
        books = self._untimed_books.concat(books)
        if all_timed(books.ts):
            self._untimed_books = book_rows.EMPTY
            return books
        valid = books.ts != book_rows.NULL
        timed = np.flatnonzero(valid)
        end = int(timed[-1]) + 1 if len(timed) else 0
        self._untimed_books = books.slice(end)
        books = books.slice(0, end)
        if end:  # earlier untimed rows: the time of the next timed row (a backward fill)
            t = books.ts.copy()
            v = valid[:end]
            nxt = np.minimum.accumulate(np.where(v, np.arange(end), end)[::-1])[::-1]
            t[~v] = t[nxt[~v]]
            books = books.with_times(t)
        return books

    def flush(self) -> FeatureResult:
        """End of stream: process held-back events and emit the still-open bars (partial)."""
        self._stats["null_timestamp_dropped"] += len(self._untimed_books)
        self._untimed_books = book_rows.EMPTY
        books, trades = self._pending_books, self._pending_trades
        self._pending_books = book_rows.EMPTY
        self._pending_trades = trade_rows.EMPTY
        return self._run(books, trades, bars_flush=True)

    def _drop_late(self, rows, ts: np.ndarray, last: int) -> tuple:
        """Rows older than `last`: a prefix of `rows` (BookRows or TradeRows, time-sorted)."""
        late = search_left(ts, last)
        if late:
            self._stats["late_dropped"] += late
            rows, ts = rows.slice(late), ts[late:]
        return rows, ts

    def _run(self, books: BookRows, trades: TradeRows, bars_flush: bool) -> FeatureResult:
        """Books (timed, sorted) go through the rebuild and the kernel `BLOCK_BOOKS` at a time
        (features/book_blocks.py)."""
        k = self._kernel
        last = k.last_ts
        if last is not None and self._pending_resets and self._pending_resets[0] <= last:
            # resets whose time is already past apply before the next event
            self._pending_resets = [r for r in self._pending_resets if r > last]
            k.apply_pending_reset()
        all_ts = books.ts
        trade_ts, trade_cols = trades.ts, (trades.price, trades.amount, trades.side)
        kind, nonce, prev, boff, bpx, bsz, aoff, apx, asz = books.messages()
        parts = []
        for b0, b1, t0, t1 in book_blocks.blocks(all_ts, trade_ts, BLOCK_BOOKS):
            bts = all_ts[b0:b1]  # a block's levels: its offsets into the batch's flat arrays
            levels, agg, status = self._rebuild.process(kind[b0:b1], nonce[b0:b1], prev[b0:b1], boff[b0:b1 + 1],
                                                        bpx, bsz, aoff[b0:b1 + 1], apx, asz, ts=bts)
            emitted = np.flatnonzero(status & ST_SYNCED)    # messages after which the book is known
            # a snapshot after a gap, or one that contradicted the rebuilt book, restarts the features
            resyncs = bts[(status & ST_RESYNC) != 0].tolist()
            pending = sorted(self._pending_resets + resyncs + self._gaps.resets(bts))
            if len(emitted) != len(bts):
                levels, agg = levels[:, emitted], agg[emitted]
            block, idx, used, bars = k.process(bts[emitted], *levels, agg, trade_ts[t0:t1],
                                               *(c[t0:t1] for c in trade_cols), np.asarray(pending, dtype=np.int64))
            self._pending_resets = pending[used:]
            parts.append((block, emitted[idx] + b0, bars))
        block, idx, bars = book_blocks.joined(parts, k.flush_bars() if bars_flush else None)
        return self._result(bars, books, idx, all_ts, block)

    def _result(self, bars, books, idx, bts=None, block=None) -> FeatureResult:
        opts = self.options
        if block is None:
            block = np.empty((len(self._hf.kernel), 0))
            bts = np.empty(0, dtype=np.int64)
            bars = [np.empty((0, len(feature_layout.BAR_FIELDS)))] * len(opts.bar_durations)
        idx = np.asarray(idx, dtype=np.int64)
        raw = books.levels(idx) if opts.keep_raw_arrays else None
        nonce = books.nonce[idx]  # NULL where none: HfBuilder makes it null
        hf = self._hf.table(bts[idx], nonce, block, raw, later=self.deferred)
        # deferred (the ETL): durations that closed no bar are left out, as its outputs skip empty tables
        tables = {d: feature_layout.bar_table(d, rows, later=self.deferred)
                  for d, rows in zip(opts.bar_durations, bars) if len(rows) or not self.deferred}
        return FeatureResult(hf=hf, bars=tables, stats={} if self.deferred else self.stats())

    # --------------------------------------------------------------- checkpoints
    def get_state(self) -> bytes:
        """Checkpoint (JSON bytes): kernel state, held-back events, pending resets, counters."""
        kernel = self._kernel.get_state()
        rebuild = self._rebuild.get_state()
        payload = {
            "rebuild": {k: _b64(v) for k, v in rebuild.items()},
            "version": STATE_VERSION,
            "options": self.options.model_dump(mode="json"),
            "kernel": {k: (_b64(v) if isinstance(v, bytes) else v) for k, v in kernel.items() if k != "fingerprint"},
            "pending_books": _ipc(_books_table(self._pending_books)),
            "untimed_books": _ipc(_books_table(self._untimed_books)),
            "pending_trades": _ipc(input_tables.normalise(self._pending_trades.to_table(), "trades")),
            "pending_resets": self._pending_resets,
            "max_gap_ms": self._gaps.max_gap_ms,
            "last_book_ts": self._gaps.last,
            "stats": self._stats,
        }
        return json.dumps(payload).encode()

    @staticmethod
    def late_dropped_in(data: bytes) -> int:
        """The `late_dropped` count of a `get_state()` checkpoint, without building an engine from it."""
        try:
            return int(json.loads(data)["stats"]["late_dropped"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a feature-engine checkpoint: {exc!r}") from None

    @classmethod
    def from_state(cls, data: bytes, options: FeatureOptions | dict | None = None, *, max_gap_ms: int | None = None,
                   **overrides: Any) -> "FeatureEngine":
        """Rebuild an engine from `get_state()`; the options (and `max_gap_ms`) must match the checkpoint's."""
        try:
            payload = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a feature-engine checkpoint: {exc}") from None
        if not isinstance(payload, dict) or payload.get("version") != STATE_VERSION:
            raise ValueError("unsupported feature-engine checkpoint version")
        engine = cls(options, max_gap_ms=max_gap_ms, **overrides)
        if payload["options"] != engine.options.model_dump(mode="json"):
            raise ValueError("checkpoint was written with different feature options")
        if payload.get("max_gap_ms") != max_gap_ms:
            raise ValueError("checkpoint was written with a different max_gap_ms")
        try:
            kernel = {k: (base64.b64decode(v) if isinstance(v, str) else v) for k, v in payload["kernel"].items()}
            engine._kernel.set_state(kernel)
            engine._rebuild.set_state({k: base64.b64decode(v) for k, v in payload["rebuild"].items()})
            # normalised: in a checkpoint of an earlier version `kind` is nullable (input_tables._NOT_NULL)
            engine._pending_books = BookRows.from_table(input_tables.normalise(_from_ipc(payload["pending_books"]),
                                                                              "books"))
            if "untimed_books" in payload:
                engine._untimed_books = BookRows.from_table(input_tables.normalise(_from_ipc(payload["untimed_books"]),
                                                                                   "books"))
            engine._pending_trades = TradeRows.from_table(_from_ipc(payload["pending_trades"]))
            engine._pending_resets = [int(r) for r in payload["pending_resets"]]
            last = payload.get("last_book_ts")
            engine._gaps.last = None if last is None else int(last)
            engine._stats.update({k: int(payload["stats"][k]) for k in _STATS})
        except (KeyError, TypeError, ValueError, pa.ArrowInvalid) as exc:
            raise ValueError(f"corrupt feature-engine checkpoint: {exc!r}") from None
        return engine


def _time_sorted(books: BookRows) -> BookRows:
    """The rows stable-sorted by time if they are not already (`_time_untimed` left none without one)."""
    t = books.ts
    if not is_sorted(t):
        books = books.take(np.argsort(t, kind="stable"))
    return books


def _books_table(books: BookRows) -> pa.Table:
    """Held books as the checkpoint stores them: the engine's columns, every field nullable
    (input_tables.stored: what an earlier version reads after a downgrade)."""
    return input_tables.stored(input_tables.normalise(books.to_table(), "books"))


def compute(books: pa.Table | None, trades: pa.Table | None = None, *, resets: Iterable[int] | None = None,
            options: FeatureOptions | dict | None = None, max_gap_ms: int | None = None,
            **overrides: Any) -> FeatureResult:
    """All features of one batch; unlike streaming, the last open bar of each duration is
    flushed (emitted although not closed).  `max_gap_ms`: see `FeatureEngine`."""
    engine = FeatureEngine(options, max_gap_ms=max_gap_ms, **overrides)
    first = engine.process(books, trades, resets=resets)
    last = engine.flush()
    return concat_results([first, last])


def concat_results(parts: list[FeatureResult]) -> FeatureResult:
    """Concatenate consecutive results of one engine (e.g. chunk outputs)."""
    hf = pa.concat_tables([p.hf for p in parts])
    bars = {d: pa.concat_tables([p.bars[d] for p in parts]) for d in parts[0].bars}
    return FeatureResult(hf=hf, bars=bars, stats=parts[-1].stats)
