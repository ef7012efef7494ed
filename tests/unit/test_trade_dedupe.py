"""The remembered trade ids are pruned exactly as the rule says, in or out of time order."""
import numpy as np
import pyarrow as pa
import pytest

from fluxforge.etl import trade_dedupe
from fluxforge.etl.trade_dedupe import WINDOW_MS, SeenIds, _prune, drop_repeated


def _reference(seen: dict[str, int], max_ids: int) -> dict[str, int]:
    """The rule: ids older than the newest minus WINDOW_MS are forgotten, then all but the
    MAX_IDS newest (the oldest first); the rest keep their order."""
    if not seen:
        return {}
    horizon = max(seen.values()) - WINDOW_MS
    kept = {k: t for k, t in seen.items() if t >= horizon}
    if len(kept) > max_ids:
        gone = {k for k, _ in sorted(kept.items(), key=lambda kv: kv[1])[:len(kept) - max_ids]}
        kept = {k: t for k, t in kept.items() if k not in gone}
    return kept


@pytest.mark.parametrize("seed", range(30))
def test_prune_keeps_what_the_rule_keeps(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(trade_dedupe, "MAX_IDS", int(rng.integers(5, 400)))
    n = int(rng.integers(0, 500))
    times = np.sort(rng.integers(0, 4 * WINDOW_MS, n))
    if seed % 3:  # some out of order: redeliveries, a carry restored after newer ids
        swap = rng.choice(n, size=min(n, int(rng.integers(0, 20))), replace=False)
        times[swap] = rng.integers(0, 4 * WINDOW_MS, len(swap))
    seen = {f"id{i}": int(t) for i, t in enumerate(times)}
    want = _reference(seen, trade_dedupe.MAX_IDS)
    pruned = SeenIds(seen)
    _prune(pruned)
    assert list(pruned.ids.items()) == list(want.items())


@pytest.mark.parametrize("seed", range(30))
def test_ids_fed_chunk_by_chunk_are_what_the_rule_remembers(seed, monkeypatch):
    """The live path feeds a symbol's trades a flush at a time and prunes after each: the ids kept
    (and the trades dropped as repeats) after every chunk are the rule's over everything fed, in or
    out of time order, carried through the checkpoint's plain dict or not."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(trade_dedupe, "MAX_IDS", int(rng.integers(5, 400)))
    seen, model = SeenIds(), {}
    t = 0
    for _ in range(int(rng.integers(1, 60))):
        n = int(rng.integers(0, 30))
        t += int(rng.integers(0, WINDOW_MS // 4))
        times = np.sort(t + rng.integers(0, 5000, n))
        if seed % 3 == 0 and n:  # redelivered old trades, and old times under new ids
            times[: int(rng.integers(0, n + 1))] -= int(rng.integers(0, 3 * WINDOW_MS))
            times = np.sort(times)
        ids = [f"id{int(rng.integers(0, 3 * len(model) + 20))}" for _ in range(n)]
        ids = [None if rng.random() < 0.05 else i for i in ids]
        trades = pa.table({"trade_id": pa.array(ids, pa.string()), "timestamp": pa.array(times, pa.int64())})
        kept, dropped = drop_repeated(trades, seen, times)
        want_keep = []
        for tid, ts in zip(ids, times):
            if tid is None:
                want_keep.append(True)
            elif tid in model:
                want_keep.append(False)
            else:
                model[tid] = int(ts)
                want_keep.append(True)
        model = _reference(model, trade_dedupe.MAX_IDS)
        assert dropped == want_keep.count(False)
        assert kept.column("trade_id").to_pylist() == [i for i, k in zip(ids, want_keep) if k]
        assert list(seen.ids.items()) == list(model.items())
        if rng.random() < 0.2:  # a segment ends: the carry keeps the plain dict, the next one rebuilds
            seen = SeenIds(dict(seen.ids))
