"""Differential tests: the Cython book rebuild (cython_ext/book_rebuild.pyx) against the
pure-Python reference (tests/reference/book_rebuild.py) on random message streams with
deletes, re-adds, crossing updates, repeated prices, bad levels, lost / repeated / swapped
messages (gaps and stale deltas), matching and contradicting snapshots, and eviction.
Compared after every message at full depth, and chunked with a checkpoint in between."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxforge._kernels.book_rebuild import BookRebuild
from fluxforge.features.book_arrays import book_messages
from tests.reference.book_rebuild import GAP, MISMATCH, RESYNC, STALE, SYNCED, ReferenceBook, within_band

TICK = 0.01
EDGES = [5.0, 20.0, 60.0]
LEVELS = 3


def _px(k: int) -> float:
    return round(100.0 + k * TICK, 2)


@st.composite
def stream(draw):
    """Rows of one symbol as the collector would write them, with faults injected."""
    truth: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    for k in range(draw(st.integers(0, 12))):
        truth["bid"][_px(-1 - draw(st.integers(0, 40)))] = float(draw(st.integers(1, 9)))
        truth["ask"][_px(1 + draw(st.integers(0, 40)))] = float(draw(st.integers(1, 9)))
    rows = []
    nonce = 1000

    def snapshot(corrupt: bool, use_nonce: bool):
        b = sorted(truth["bid"].items(), reverse=True)
        a = sorted(truth["ask"].items())
        if corrupt and (b or a):
            side = b if b else a
            side[0] = (side[0][0], side[0][1] + 1.0)
        rows.append(dict(kind="snapshot", nonce=nonce if use_nonce else None, prev_nonce=None,
                         bid_px=[p for p, _ in b], bid_sz=[q for _, q in b],
                         ask_px=[p for p, _ in a], ask_sz=[q for _, q in a]))

    snapshot(False, True)
    for _ in range(draw(st.integers(1, 30))):
        what = draw(st.sampled_from(["delta"] * 6 + ["snapshot", "bad_snapshot", "gap", "stale", "swap", "junk"]))
        if what in ("snapshot", "bad_snapshot"):
            snapshot(what == "bad_snapshot", draw(st.booleans()) or what == "bad_snapshot")
            continue
        if what == "junk":  # bad levels: ignored by both, counted by the kernel
            rows.append(dict(kind="delta", nonce=nonce + 1, prev_nonce=nonce, bid_px=[float("nan"), -1.0],
                             bid_sz=[1.0, 1.0], ask_px=[_px(3)], ask_sz=[float("inf")]))
            nonce += 1
            continue
        n_up = draw(st.integers(0, 4))
        levels = {"bid": ([], []), "ask": ([], [])}
        for _ in range(n_up):
            side = draw(st.sampled_from(["bid", "ask"]))
            # offsets that can cross the other side, and repeats of existing prices (re-adds, deletes)
            off = draw(st.integers(-6, 40))
            p = _px(-off if side == "bid" else off)
            q = draw(st.sampled_from([0.0, 0.0, 1.0, 2.5, 7.0]))
            levels[side][0].append(p)
            levels[side][1].append(q)
            if q == 0.0:
                truth[side].pop(p, None)
            else:
                truth[side][p] = q
        first = nonce + 1
        last = nonce + draw(st.integers(1, 3))  # one message may cover several ids (Binance U..u)
        row = dict(kind="delta", nonce=last, prev_nonce=first - 1, bid_px=levels["bid"][0], bid_sz=levels["bid"][1],
                   ask_px=levels["ask"][0], ask_sz=levels["ask"][1])
        nonce = last
        if what == "gap":
            continue                            # lost: the next delta does not link
        rows.append(row)
        if what == "stale":
            rows.append(dict(row))              # delivered twice
        elif what == "swap" and len(rows) >= 2 and rows[-2]["kind"] == "delta":
            rows[-1], rows[-2] = rows[-2], rows[-1]
    if draw(st.booleans()):  # a stream without links (e.g. a source without sequence numbers)
        for r in rows:
            r["prev_nonce"] = None
    max_depth = draw(st.sampled_from([10**9, 10**9, 4, 1]))
    return rows, max_depth


def _table(rows):
    cols = {k: [r[k] for r in rows] for k in ("kind", "nonce", "prev_nonce", "bid_px", "bid_sz", "ask_px", "ask_sz")}
    return pa.table({"kind": pa.array(cols["kind"], pa.string()), "nonce": pa.array(cols["nonce"], pa.int64()),
                     "prev_nonce": pa.array(cols["prev_nonce"], pa.int64()),
                     **{k: pa.array(cols[k], pa.list_(pa.float64())) for k in ("bid_px", "bid_sz", "ask_px", "ask_sz")}})


def _expected_agg(bids, asks):
    """Aggregate block (book_struct.pxd AG_* order) from the reference book, or None if invalid."""
    if not bids or not asks or bids[0][0] > asks[0][0]:
        return None
    mid = (bids[0][0] + asks[0][0]) / 2
    out = []
    deep = within_band(bids, asks, EDGES[-1])
    for levels, sign in ((deep[0], 1), (deep[1], -1)):
        dist = [((mid - p) if sign > 0 else (p - mid)) / mid * 10000.0 for p, _ in levels]
        bands = []
        for lo, hi in zip([0.0] + EDGES[:-1], EDGES):
            bands.append(math.fsum(q for (_, q), d in zip(levels, dist) if lo <= d < hi))
        out += [math.fsum(q for _, q in levels), math.fsum(p * q for p, q in levels),
                math.fsum((p - mid) * q for p, q in levels), math.fsum(q * q for _, q in levels),
                math.fsum(q / (i + 1) for i, (_, q) in enumerate(levels)),
                math.fsum(q / (1 + d) for (_, q), d in zip(levels, dist)),
                levels[-1][0] if levels else float("nan")] + bands
    return out


def _close(a, b):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * abs(b) + 1e-12


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream())
def test_kernel_equals_reference_after_every_message(case):
    rows, max_depth = case
    kernel = BookRebuild(LEVELS, EDGES, max_depth)
    ref = ReferenceBook(max_depth)
    for i, row in enumerate(rows):
        lv, agg, status = kernel.process(*book_messages(_table([row])))
        want = ref.apply(row["kind"], row["nonce"], row["prev_nonce"], row["bid_px"], row["bid_sz"],
                         row["ask_px"], row["ask_sz"])
        assert int(status[0]) == want, f"message {i}: status {int(status[0])} != {want}"
        bids, asks = ref.bid_levels(), ref.ask_levels()
        b, bq, a, aq = kernel.levels()
        if ref.synced:   # full depth, every level
            assert list(zip(b.tolist(), bq.tolist())) == bids, f"message {i}: bids"
            assert list(zip(a.tolist(), aq.tolist())) == asks, f"message {i}: asks"
        if want & SYNCED:
            top = [[p for p, _ in bids[:LEVELS]], [q for _, q in bids[:LEVELS]],
                   [p for p, _ in asks[:LEVELS]], [q for _, q in asks[:LEVELS]]]
            for block, values in zip(lv[:, 0], top):
                assert block[:len(values)].tolist() == values and np.isnan(block[len(values):]).all()
            exp = _expected_agg(bids, asks)
            if exp is None:
                assert np.isnan(agg[0]).all()
            else:
                assert all(_close(g, e) for g, e in zip(agg[0].tolist(), exp)), (i, agg[0].tolist(), exp)
        else:
            assert np.isnan(lv[:, 0]).all() and np.isnan(agg[0]).all()
    stats = kernel.stats()
    assert stats["book_evicted"] == ref.evicted
    assert stats["book_mismatches"] == ref.mismatches


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream(), st.data())
def test_chunks_with_checkpoint_equal_one_pass(case, data):
    rows, max_depth = case
    whole = BookRebuild(LEVELS, EDGES, max_depth).process(*book_messages(_table(rows)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=3)))
    kernel = BookRebuild(LEVELS, EDGES, max_depth)
    parts = []
    for a, b in zip([0] + cuts, cuts + [len(rows)]):
        parts.append(kernel.process(*book_messages(_table(rows[a:b]))))
        fresh = BookRebuild(LEVELS, EDGES, max_depth)
        fresh.set_state(kernel.get_state())
        kernel = fresh
    lv = np.concatenate([p[0] for p in parts], axis=1)
    agg = np.concatenate([p[1] for p in parts])
    status = np.concatenate([p[2] for p in parts])
    np.testing.assert_array_equal(status, whole[2])
    np.testing.assert_array_equal(lv, whole[0])
    np.testing.assert_array_equal(agg, whole[1])


def test_faults_are_flagged():
    """Each rule once, by hand: a gap unsyncs until the next snapshot, which restarts the features;
    a stale delta is skipped; a contradicting snapshot is a mismatch; eviction is counted."""
    rows = [
        dict(kind="snapshot", nonce=10, prev_nonce=None, bid_px=[99.0, 98.0], bid_sz=[1.0, 1.0], ask_px=[101.0], ask_sz=[1.0]),
        dict(kind="delta", nonce=9, prev_nonce=5, bid_px=[99.0], bid_sz=[5.0], ask_px=[], ask_sz=[]),      # stale
        dict(kind="delta", nonce=12, prev_nonce=9, bid_px=[97.0], bid_sz=[2.0], ask_px=[], ask_sz=[]),     # Binance first diff
        dict(kind="delta", nonce=14, prev_nonce=13, bid_px=[99.0], bid_sz=[0.0], ask_px=[], ask_sz=[]),    # gap
        dict(kind="delta", nonce=15, prev_nonce=14, bid_px=[98.0], bid_sz=[3.0], ask_px=[], ask_sz=[]),    # unsynced
        dict(kind="snapshot", nonce=20, prev_nonce=None, bid_px=[98.0], bid_sz=[3.0], ask_px=[101.0], ask_sz=[1.0]),
        dict(kind="delta", nonce=21, prev_nonce=20, bid_px=[96.0], bid_sz=[1.0], ask_px=[], ask_sz=[]),
        dict(kind="snapshot", nonce=21, prev_nonce=None, bid_px=[98.0, 96.0], bid_sz=[3.0, 2.0], ask_px=[101.0], ask_sz=[1.0]),
    ]
    kernel = BookRebuild(2, EDGES, 2)
    _, _, status = kernel.process(*book_messages(_table(rows)))
    assert status.tolist() == [3, STALE, SYNCED, GAP, 0, 3 | RESYNC, SYNCED, 3 | MISMATCH | RESYNC]
    stats = kernel.stats()
    assert (stats["book_gaps"], stats["book_stale"], stats["book_unsynced"], stats["book_mismatches"]) == (1, 1, 1, 1)
    assert stats["book_evicted"] == 1     # the third bid (97, 98, 99 -> keep 2) after nonce 12
    assert kernel.levels()[0].tolist() == [98.0, 96.0]


def test_okx_style_links_and_heartbeats():
    """OKX links each message to the previous one (prevSeqId = the book's seqId) and may send a
    message without changes whose seqId equals its prevSeqId: both apply; a repeat does not."""
    rows = [
        dict(kind="snapshot", nonce=100, prev_nonce=-1, bid_px=[10.0], bid_sz=[1.0], ask_px=[11.0], ask_sz=[1.0]),
        dict(kind="delta", nonce=105, prev_nonce=100, bid_px=[10.5], bid_sz=[2.0], ask_px=[], ask_sz=[]),
        dict(kind="delta", nonce=105, prev_nonce=105, bid_px=[], bid_sz=[], ask_px=[], ask_sz=[]),   # heartbeat
        dict(kind="delta", nonce=105, prev_nonce=100, bid_px=[10.5], bid_sz=[0.0], ask_px=[], ask_sz=[]),  # repeat
        dict(kind="delta", nonce=107, prev_nonce=105, bid_px=[9.0], bid_sz=[1.0], ask_px=[], ask_sz=[]),
    ]
    kernel = BookRebuild(2, EDGES, 100)
    _, _, status = kernel.process(*book_messages(_table(rows)))
    assert status.tolist() == [3, SYNCED, SYNCED, STALE, SYNCED]
    assert kernel.levels()[0].tolist() == [10.5, 10.0, 9.0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream(), st.data())
def test_rows_not_emitted_get_the_same_core_sums(case, data):
    """With timestamps and an hf emission interval, only the messages the feature engine will emit
    get every aggregate; the others get the sums it needs for every message (total, sum (p - mid) q,
    deepest price, first band), bit for bit as in the full pass."""
    rows, max_depth = case
    ts = np.cumsum(data.draw(st.lists(st.integers(0, 400), min_size=len(rows), max_size=len(rows)))).astype(np.int64)
    full = BookRebuild(LEVELS, EDGES, max_depth).process(*book_messages(_table(rows)))
    lv, agg, status = BookRebuild(LEVELS, EDGES, max_depth, emit_ms=500).process(*book_messages(_table(rows)), ts=ts)
    np.testing.assert_array_equal(status, full[2])
    np.testing.assert_array_equal(lv, full[0])
    w = agg.shape[1] // 2
    core = [0, 2, 6, 7, w, w + 2, w + 6, w + 7]      # AG_TOTAL, AG_DQ, AG_DEEP, first band, per side
    np.testing.assert_array_equal(agg[:, core], full[1][:, core])
    nxt, emitted = None, []
    for i in np.flatnonzero(status & SYNCED):        # the feature engine's rule (docs/features.md)
        if nxt is None or ts[i] >= nxt:
            emitted.append(i)
            nxt = (ts[i] // 500 + 1) * 500
    np.testing.assert_array_equal(agg[emitted], full[1][emitted])
    valid = ~np.isnan(full[1][:, 0])
    others = np.setdiff1d(np.flatnonzero(valid), emitted)
    assert np.isnan(agg[others][:, 1]).all()         # AG_PQ not computed where not needed
