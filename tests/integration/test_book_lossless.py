"""Order books are lossless end to end: real captures -> loopback (Binance + OKX) -> unmodified
ccxt -> collector -> ETL.

1. From the bronze rows alone, the independent rebuild (tests/reference/exchange_book.py:
   snapshot + every diff, no trimming, Binance's U/u rule, OKX's seqId/prevSeqId and
   CRC32 per message) equals the loopback exchange's own book at every update and
   at full depth.  ccxt trims its own Binance book to `watchOrderBookLimit` (1000
   levels, which the real BTCUSDT capture moves through: a copy of ccxt's book has
   holes there) and its OKX book to 400: bronze must not depend on either.
2. The ETL runs over those segments; its rebuild kernel (cython_ext/book_rebuild.pyx,
   with the ETL's options), fed the messages exactly as the ETL's reader and engine
   order them, holds at EVERY message the same whole book (every level, both sides)
   as the exchange-rule rebuild; and the book in the ETL's checkpoint is that book at
   the message the ETL reached.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pyarrow as pa
import pytest
from book_truth import BookTruth, assert_bronze_rebuilds
from collector_support import exchange_entry, make_config, ready_tables, rows_of, running_collector, wait_until

from fluxforge._kernels.book_rebuild import BookRebuild
from fluxforge.config import DEFAULT_MAX_GAP_MS, FeatureOptions
from fluxforge.etl.bronze_reader import SegmentReader
from fluxforge.etl.checkpoint import CheckpointStore
from fluxforge.etl.runner import EtlRunner
from fluxforge.features import book_arrays, layout as feature_layout
from fluxforge.features.engine import FeatureEngine
from fluxforge.features.input_tables import sorted_valid_time
from fluxforge.loopback import LoopbackExchange
from tests.conftest import SHARED_DATA
from tests.reference import exchange_book

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


async def collect_replay(tmp_path, files):
    lx = LoopbackExchange("replay", replay_files=files, speed=0)
    lx.freeze()  # hold the replay until the collector has its snapshots
    async with lx:
        truth = BookTruth(lx)
        entries = [exchange_entry(lx, name, SYMBOLS, channels=["orderbook"]) for name in ("binance", "okx")]
        for entry in entries:
            entry["ccxt"]["enableRateLimit"] = False
        # one loop runs the loopback and the collector: a replay as fast as possible starves the
        # socket readers for seconds at a time, which is not a stalled exchange
        cfg = make_config(tmp_path, entries, segment_max_seconds=5.0, stall_timeout=120.0)
        async with running_collector(cfg) as collector:
            await wait_until(lambda: all(("binance", s) in collector.recorder._books
                                         and ("okx", s) in collector.recorder._books for s in SYMBOLS),
                             timeout=30, what="both books synced")
            lx.freeze(False)
            await wait_until(lambda: lx.source.finished, timeout=120, what="replay to finish")
            last = {s: lx.source.books[s].last_update_id for s in SYMBOLS}
            await wait_until(lambda: all(collector.recorder.last_nonce.get((ex, s)) == last[s]
                                         for ex in ("binance", "okx") for s in SYMBOLS),
                             timeout=60, what="the last update recorded")
        truth.verify()
    return lx, truth, ready_tables(tmp_path)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """The real captures collected once for this module: (data dir, loopback, truth, ready tables)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data/binance-spot not present")
    data = tmp_path_factory.mktemp("lossless")
    files = [SHARED_DATA / "btcusdt_20240808.gz", SHARED_DATA / "ethusdt_20240808.gz"]
    lx, truth, tables = asyncio.run(asyncio.wait_for(collect_replay(data, files), 240))
    return data, lx, truth, tables


@pytest.mark.realdata
@pytest.mark.slow
def test_real_captures_rebuild_exactly_at_every_update(replayed):
    _data, lx, truth, tables = replayed
    assert not rows_of(tables["events"], event="gap") and not rows_of(tables["events"], event="dropped")
    for exchange in ("binance", "okx"):
        for symbol in SYMBOLS:
            rows = rows_of(tables["orderbook"], exchange=exchange, symbol=symbol)
            sent = lx.sent.stream(exchange, symbol, "orderbook")
            # one row per message ccxt applied: the snapshot, then every update id sent after it
            assert [r["nonce"] for r in rows[1:]] == sent.ids[sent.ids.index(rows[1]["nonce"]):]
            assert len(rows) > 3000
            assert assert_bronze_rebuilds(rows, truth, exchange, exchange, symbol) == len(rows)
            deepest = max(len(r["bid_px"]) for r in rows if r["kind"] == "snapshot")
            assert deepest == (1000 if exchange == "binance" else 400)  # the depth the exchange gave


def etl_order(segments: list, key: tuple[str, str]) -> pa.Table:
    """`key`'s book messages as the ETL applies them: its reader, segment by segment, then the
    engine's stable time order (held-back rows are re-sorted with the next chunk the same way)."""
    batches = []
    for seg in segments:
        reader = SegmentReader(seg)
        reader.verify()
        batches += reader.book_batches()
    parts = [batch[key] for batch in batches if key in batch]
    assert parts, f"{key}: no book rows in {len(segments)} segments (keys {sorted(set().union(*batches))})"
    table, _times, dropped = sorted_valid_time(pa.concat_tables(parts))
    assert dropped == 0
    return table


def as_dicts(levels: tuple) -> tuple[dict, dict]:
    """A whole rebuilt book from `BookRebuild.levels()` / `FeatureEngine.book()` (the accessor
    `inspect --book-at` uses) as price -> size dicts."""
    bid, bid_sz, ask, ask_sz = levels
    assert np.all(np.diff(bid) < 0) and np.all(np.diff(ask) > 0), "levels must be unique and best first"
    return dict(zip(bid.tolist(), bid_sz.tolist())), dict(zip(ask.tolist(), ask_sz.tolist()))


@pytest.mark.realdata
@pytest.mark.slow
def test_etl_rebuild_equals_the_exchange_rule_at_every_update(replayed):
    data, _lx, _truth, tables = replayed
    opts = FeatureOptions()
    outcomes = EtlRunner(data / "segments", data / "features", data / "state", opts).run_once()
    assert outcomes and all(o.state == "done" for o in outcomes)
    segments = sorted((data / "segments" / "done").iterdir())
    checkpoint = CheckpointStore(data / "state").load()
    for exchange in ("binance", "okx"):
        for symbol in SYMBOLS:
            what = f"{exchange} {symbol}"
            bronze_rows = rows_of(tables["orderbook"], exchange=exchange, symbol=symbol)
            etl = etl_order(segments, (exchange, symbol))
            # the ETL applies exactly bronze's messages in bronze's order (so the exchange's rule holds)
            assert etl.column("nonce").to_pylist() == [r["nonce"] for r in bronze_rows], what
            assert etl.column("kind").to_pylist() == [r["kind"] for r in bronze_rows], what
            engine = FeatureEngine.from_state(checkpoint.symbols[(exchange, symbol)][0], opts, max_gap_ms=DEFAULT_MAX_GAP_MS)
            reached = engine.stats()["book_messages"]
            assert len(bronze_rows) // 2 < reached <= len(bronze_rows), what  # the rest waits for the watermark
            reference = exchange_book.BookRebuild(exchange)
            kernel = BookRebuild(**feature_layout.rebuild_args(opts))
            for i, row in enumerate(bronze_rows):
                reference.apply(row)
                message = etl.slice(i, 1)  # called as FeatureEngine calls it, one message at a time
                _levels, _agg, status = kernel.process(*book_arrays.book_messages(message),
                                                       ts=book_arrays.int64_column(message, "timestamp"))
                assert status[0] & 1, f"{what}: the ETL lost sync at message {i} (nonce {row['nonce']})"
                bids, asks = as_dicts(kernel.levels())
                assert bids == reference.bids and asks == reference.asks, (
                    f"{what}: the ETL's book differs from the exchange's rule at message {i} ({row['kind']}, "
                    f"nonce {row['nonce']}): {len(bids)}/{len(reference.bids)} bids, "
                    f"{len(asks)}/{len(reference.asks)} asks")
                if i + 1 == reached:  # the ETL's own kernel, restored from its checkpoint, got here
                    assert as_dicts(engine.book()) == (reference.bids, reference.asks), what
            stats = kernel.stats()
            assert stats["book_messages"] == len(bronze_rows) and stats["book_gaps"] == stats["book_stale"] == 0
            assert stats["book_mismatches"] == stats["book_evicted"] == stats["book_bad_levels"] == 0, (what, stats)
            if exchange == "okx":
                assert reference.checksums_verified == len(bronze_rows)
