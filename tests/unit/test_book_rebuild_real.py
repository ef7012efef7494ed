"""The book rebuild on the real Binance captures (../shared/data): the kernel's book equals an
independent rebuild by Binance's documented rule (tests/reference/binance_capture.py) after
**every** message, at **full** depth; and the features computed from the format 2 messages
equal the reference features of the same rebuilt books."""
from __future__ import annotations

import pyarrow as pa
import pytest

from fluxforge._kernels.book_rebuild import BookRebuild
from fluxforge.features.book_arrays import book_messages
from fluxforge.features.engine import compute

CAPTURES = ["btcusdt_20240808.gz", "ethusdt_20240808.gz"]


@pytest.mark.realdata
@pytest.mark.parametrize("name", CAPTURES)
def test_kernel_book_equals_binance_rule_at_every_update(shared_capture, name):
    from tests.reference.binance_capture import replay
    from fluxforge.bronze import schemas as bronze

    kernel = BookRebuild(10, [5.0, 10.0, 25.0, 50.0, 100.0], 10**9)
    n = 0
    for row, bids, asks in replay(shared_capture / name):
        table = pa.Table.from_pylist([{"exchange": "binance", "symbol": "X", **row}], schema=bronze.ORDERBOOK)
        _, _, status = kernel.process(*book_messages(table))
        assert status[0] & 1, f"message {n} (nonce {row['nonce']}) not applied: status {status[0]}"
        b, bq, a, aq = kernel.levels()
        assert list(zip(b.tolist(), bq.tolist())) == sorted(bids.items(), reverse=True), f"bids after message {n}"
        assert list(zip(a.tolist(), aq.tolist())) == sorted(asks.items()), f"asks after message {n}"
        n += 1
    stats = kernel.stats()
    assert n > 1000 and stats["book_deltas"] == n - 1
    assert stats["book_gaps"] == stats["book_stale"] == stats["book_mismatches"] == stats["book_evicted"] == 0


@pytest.mark.realdata
def test_features_from_messages_match_reference(shared_capture):
    from tests.reference.binance_capture import load_messages
    from tests.unit.test_features_reference import assert_matches_reference

    books = load_messages(shared_capture / CAPTURES[0]).slice(0, 800)
    opts = dict(hf_emit_interval=0.0)
    result = compute(books, None, **opts)
    assert result.hf.num_rows == books.num_rows
    # the outer bands are not empty any more: the full book reaches them
    assert min(result.hf.column("bid_vol_band_25_50bps").to_pylist()) > 0
    assert_matches_reference(result, books, None, [], **opts)
