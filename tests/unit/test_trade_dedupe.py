"""The remembered trade ids are pruned exactly as the rule says, in or out of time order."""
import numpy as np
import pytest

from fluxforge.etl import trade_dedupe
from fluxforge.etl.trade_dedupe import WINDOW_MS, _prune


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
    _prune(seen)
    assert list(seen.items()) == list(want.items())
