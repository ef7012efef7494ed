"""The live path's feed alone: a recorded segment fed in the chunks the live ETL logged vs as one chunk.

Why: `bench/live.py` measures the whole ETL process with live on against live off, two
processes on a shared machine, and its ratio moves by +-20 % from run to run.  The cost the
live path adds is almost all in feeding each symbol a chunk per collector flush
(etl/segment_feed.py), so this bench isolates it, in one process: it records SECONDS of the
loopback stream with the live ETL on (bench/live.py's setting, which logs every chunk it fed:
etl/chunk_log.py), then feeds the finished segments through a fresh engine bank twice,
interleaved ROUNDS times --

  one chunk   each segment as the segment job feeds it without a live log (today's ETL)
  logged      each segment in the chunks the live path fed, as the segment job replays them

-- and prints the minimum CPU of each, their ratio and the cost per symbol and chunk.  The
ratio is what a compiled multi-symbol feed would have to bring down (docs/live.md, the cost).
With --split, one more logged feed says where that cost goes: thread CPU per phase (nested
phases are part of the one above them), per symbol and chunk, the timers' own ~1 us a call included,
and what of it the compiled kernels' calls take (the rest is the Python and Arrow around them).
Its last lines are a floor under any live path, however compiled: each logged chunk's rows
appended to the channels' journals as the collector flushes them, and read back as the live path
reads them (bronze/journal.py `JournalTail`, every batch validated), against the one-chunk feed
and against the live-off ETL's whole work on the same segments (EtlRunner.run_once: verify, feed
as one chunk, write the Parquet parts, checkpoint). With live on, the segment job still writes the
parts (it takes the live path's rows instead of feeding again), so live on / live off is at least
1 + reads / that work, before a row is computed or published.

Run: .venv/bin/python bench/live_feed.py [--seconds 60] [--flush 0.25] [--reorder 1] [--rounds 5]
                                          [--symbols 20] [--trades-per-update 0.5] [--split]
                                          [--segment-seconds 30]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import live  # noqa: E402  (bench/live.py: the recording setting, and the repo on sys.path)

from fluxforge.config import load_config  # noqa: E402
from fluxforge.etl import chunk_log  # noqa: E402
from fluxforge.etl.bronze_reader import SegmentReader  # noqa: E402
from fluxforge.etl.engines import EngineBank  # noqa: E402
from fluxforge.etl.segment_feed import SegmentFeeder  # noqa: E402
from fluxforge.etl.segment_job import BOOK_BATCH_ROWS, feed_logged  # noqa: E402


def _verified(seg: Path) -> tuple[SegmentReader, chunk_log.Ends]:
    """A finished segment's reader, its manifest verified, and the rows of each channel."""
    reader = SegmentReader(seg, batch_rows=BOOK_BATCH_ROWS)
    return reader, chunk_log.channel_rows(reader.verify())


def feed(config: Path, segments: list[Path], logged: bool) -> tuple[float, int, int]:
    """CPU seconds to feed `segments` through a fresh bank; the chunks fed and the symbols seen."""
    cfg = load_config(str(config))
    bank = EngineBank(cfg.etl.features, None, int(round(cfg.etl.reorder_window * 1000)), cfg.etl.trades,
                      cfg.etl.symbol_overrides, cfg.etl.max_gap_ms)
    t0, chunks = time.process_time(), 0
    for seg in segments:
        reader, rows = _verified(seg)
        plan = chunk_log.plan(seg, rows) if logged else []
        feeder = SegmentFeeder(bank, seg.name)
        if plan:
            feed_logged(feeder, reader, plan, rows, BOOK_BATCH_ROWS)
        else:
            feeder.feed_chunk(reader.raw_book_batches(BOOK_BATCH_ROWS), reader.raw_trades(), reader.raw_events(),
                              reader.raw_tickers())
        feeder.finish()
        chunks += len(plan) + 1
    return time.process_time() - t0, chunks, len(bank.keys())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--flush", type=float, default=0.25, help="collector.flush_interval of the recording")
    ap.add_argument("--reorder", type=float, default=1.0, help="etl.reorder_window of the recording")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--trades-per-update", type=float, default=0.5,
                    help="trades per book update (5: 50 trades/s per symbol, a busy market)")
    ap.add_argument("--split", action="store_true", help="then where the logged feed's CPU goes, per phase")
    ap.add_argument("--segment-seconds", type=float, default=30.0,
                    help="collector.segment_max_seconds of the recording (the service's default is 3600)")
    args = ap.parse_args()
    symbols = live.bench_symbols(args.symbols)
    tmp = Path(tempfile.mkdtemp(prefix="ff-bench-live-feed-"))
    try:
        asyncio.run(live._setting(tmp, symbols, args.seconds, args.flush, args.reorder, args.trades_per_update,
                                  args.segment_seconds))
        on = tmp / f"on-{args.flush}"
        segments = sorted((on / "data" / "segments" / "done").iterdir())
        logs = sum((seg / chunk_log.SEGMENT_FILE).is_file() for seg in segments)
        feed(on / "config.yaml", segments, False)  # warm: imports, kernels, page cache
        one, logged = [], []
        for _ in range(args.rounds):
            one.append(feed(on / "config.yaml", segments, False)[0])
            cpu, chunks, nsym = feed(on / "config.yaml", segments, True)
            logged.append(cpu)
        split = _split(on / "config.yaml", segments) if args.split else None
        reads = min(_journal_reads(segments, tmp / "journals") for _ in range(args.rounds)) if args.split else None
        jobs = min(_live_off_etl(on / "config.yaml", segments, tmp / "etl") for _ in range(args.rounds)) if args.split else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a, b = min(one), min(logged)
    print(f"live feed: {len(symbols)} symbols, {args.seconds:g} s recorded with flush {args.flush:g} s, "
          f"reorder {args.reorder:g} s, segments of {args.segment_seconds:g} s; {len(segments)} segments ({logs} with a live log), {chunks} chunks; "
          f"min of {args.rounds}")
    print(f"one chunk {a:.3f} s   logged {b:.3f} s   ratio {b / a:.1f}   "
          f"{(b - a) / max(chunks * nsym, 1) * 1e6:.0f} us per symbol and chunk beyond one chunk")
    if split is not None:
        print("where the logged feed's CPU goes, us per symbol and chunk (nested: part of the line above):")
        for name, seconds in split.items():
            print(f"  {name:<50} {seconds / max(chunks * nsym, 1) * 1e6:7.0f}")
        print(f"reading the logged chunks from journals, as the live path does: {reads:.3f} s "
              f"({reads / max(chunks, 1) * 1e6:.0f} us per chunk, all symbols), {reads / a:.2f}x the one-chunk feed")
        print(f"the live-off ETL's whole work on these segments (run_once): {jobs:.3f} s; reading the journals "
              f"alone makes live on / live off at least {1 + reads / jobs:.2f}x")


# (phase, where its function is looked up, the function's name there): nested phases after their parent
_PHASES = [("the feed (SegmentFeeder.feed_chunk)", "fluxforge.etl.segment_feed:SegmentFeeder", "feed_chunk"),
           ("  split by symbol: books", "fluxforge.etl.book_rows", "by_symbol"),
           ("    Arrow book lists to arrays", "fluxforge.features.book_arrays", "book_messages"),
           ("  split by symbol: trades", "fluxforge.etl.trade_rows", "by_symbol"),
           ("  split by symbol: tickers", "fluxforge.etl.ticker_rows", "by_symbol"),
           ("  add trades (dedupe, merge with held)", "fluxforge.etl.engines:SymbolFeed", "add_trades"),
           ("  add tickers", "fluxforge.etl.engines:SymbolFeed", "add_tickers"),
           ("  push books (watermark, held rows)", "fluxforge.etl.engines:SymbolFeed", "push"),
           ("    book engine (FeatureEngine.process)", "fluxforge.features.engine:FeatureEngine", "process"),
           ("    trade products (TradeProducts.process)", "fluxforge.etl.trade_products:TradeProducts", "process"),
           ("      ticker products", "fluxforge.etl.ticker_products:TickerProducts", "process"),
           ("  the chunk's outputs kept (SegmentFeeder._take)", "fluxforge.etl.segment_feed:SegmentFeeder", "_take")]


def _split(config: Path, segments: list[Path]) -> dict[str, float]:
    """One more logged feed with each phase's function timed (thread CPU): seconds per phase, and
    last the compiled kernels' calls (all of them, wherever they are made). The wrappers stay: call this last."""
    import importlib
    phases = {}
    for name, where, attr in _PHASES:
        module, _, cls = where.partition(":")
        owner = importlib.import_module(module)
        phases[name] = (getattr(owner, cls) if cls else owner, attr)
    totals = live._thread_cpu(phases)
    totals[_KERNELS] = 0.0
    _time_kernel_calls(totals)
    feed(config, segments, True)
    return totals


_KERNELS = "the compiled kernels' calls, in all phases"


def _journal_reads(segments: list[Path], scratch: Path) -> float:
    """Thread CPU to read each segment's logged chunks back from journals, one `JournalTail.read()`
    per channel and chunk (the live step's reads), the chunks written as the collector's flushes
    (one batch per channel and flush, not fsync'd: only the reads are timed)."""
    import pyarrow.parquet as pq

    from fluxforge.bronze.journal import JournalTail, JournalWriter
    from fluxforge.bronze.schemas import CHANNEL_SCHEMAS
    total = 0.0
    for seg in segments:
        reader, rows = _verified(seg)
        plan = chunk_log.plan(seg, rows)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        files = {}
        for c in chunk_log.CHANNELS:
            path = reader.channel_path(c)
            if path is not None:
                table = pq.read_table(path).select(CHANNEL_SCHEMAS[c].names).cast(CHANNEL_SCHEMAS[c])
                journal = JournalWriter(scratch / f"{c}.arrow", CHANNEL_SCHEMAS[c])
                files[c] = (table, journal, JournalTail(journal.path, CHANNEL_SCHEMAS[c]))
        prev = dict.fromkeys(chunk_log.CHANNELS, 0)
        for ends in plan:
            for c, (table, journal, tail) in files.items():
                if ends[c] > prev[c]:
                    journal.write_batch(table.slice(prev[c], ends[c] - prev[c]).combine_chunks().to_batches()[0],
                                        sync=False)
            t = time.thread_time()
            got = {c: tail.read() for c, (_, _, tail) in files.items()}
            total += time.thread_time() - t
            if any(sum(b.num_rows for b in got[c]) != ends[c] - prev[c] for c in files):
                raise RuntimeError(f"{seg.name}: the journals gave back other rows than were written")
            prev = ends
        for _, journal, _ in files.values():
            journal.close()
    return total


def _live_off_etl(config: Path, segments: list[Path], scratch: Path) -> float:
    """Process CPU (Arrow's threads included) of the live-off ETL's work on copies of `segments` (their
    live logs removed: today's one-chunk feed) in a fresh data dir: EtlRunner.run_once, as `fluxforge
    etl --once` runs it."""
    from fluxforge.bronze.segments import SegmentStore
    from fluxforge.etl.runner import EtlRunner
    shutil.rmtree(scratch, ignore_errors=True)
    cfg = load_config(str(config))
    cfg.data_dir = scratch
    ready = SegmentStore(cfg.segments_dir).ensure().root / "ready"
    for seg in segments:
        shutil.copytree(seg, ready / seg.name)
        (ready / seg.name / chunk_log.SEGMENT_FILE).unlink(missing_ok=True)
    runner = EtlRunner.from_config(cfg)
    t = time.process_time()
    outcomes = runner.run_once()
    cpu = time.process_time() - t
    if len(outcomes) != len(segments) or any(o.state != "done" for o in outcomes):
        raise RuntimeError(f"the live-off ETL did not finish every segment: {outcomes}")
    return cpu


class _TimedKernel:
    """A compiled kernel object whose `process` calls add their thread CPU to totals[_KERNELS]
    (Cython classes cannot be patched: the engines get this in front of theirs)."""

    def __init__(self, kernel, totals: dict[str, float]):
        self._kernel, self._totals = kernel, totals

    def __getattr__(self, name):
        return getattr(self._kernel, name)

    def process(self, *args, **kwargs):
        t = time.thread_time()
        try:
            return self._kernel.process(*args, **kwargs)
        finally:
            self._totals[_KERNELS] += time.thread_time() - t


def _time_kernel_calls(totals: dict[str, float]) -> None:
    """Engines made from here on time their kernels: the book rebuild and feature kernel, the
    trade bars, volume/dollar bars, per-trade features and ticker kernels."""
    from fluxforge.etl.trade_products import TradeProducts
    from fluxforge.features.engine import FeatureEngine

    def timed(cls, wrap):
        init = cls.__init__

        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            wrap(self)
        cls.__init__ = __init__

    def book(engine):
        engine._kernel, engine._rebuild = _TimedKernel(engine._kernel, totals), _TimedKernel(engine._rebuild, totals)

    def trades(products):
        products._bars = _TimedKernel(products._bars, totals)
        products._info = {tree: _TimedKernel(k, totals) for tree, k in products._info.items()}
        if products._per_trade is not None:
            products._per_trade = _TimedKernel(products._per_trade, totals)
        products._ticker._kernel = _TimedKernel(products._ticker._kernel, totals)
    timed(FeatureEngine, book)
    timed(TradeProducts, trades)


if __name__ == "__main__":
    main()
