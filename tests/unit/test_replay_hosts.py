"""`fluxforge replay` keeps feature state per (host, exchange, symbol) (DESIGN decision 12).

Two hosts collect the same symbols over the same time; host pi01 has an
exchange-wide reconnect.  Replaying both together must give exactly the files of
replaying each host alone: no interleaving of the two streams (rows dropped as
late) and no reset of pi02 by pi01's reconnect.
"""
from fleet_bronze import write_fleet
from etl_support import tree_files

from fluxforge.config import FeatureOptions
from fluxforge.etl.replay import replay
from syncdata import tree_digest

OPTIONS = FeatureOptions(hf_emit_interval=1.0, bar_durations=[5, 60])


def test_replay_of_two_hosts_equals_each_host_alone(tmp_path):
    fleet = write_fleet(tmp_path / "bronze", segments=3, seconds=40.0)
    together = tmp_path / "together"
    both = sorted(fleet["pi01"] + fleet["pi02"], key=lambda p: p.name.split("-", 2)[2])  # interleaved in time
    replay(both, together, OPTIONS, 65536)
    alone = tmp_path / "alone"
    for host in ("pi01", "pi02"):
        replay(fleet[host], alone, OPTIONS, 65536)
    got, want = tree_digest(together), tree_digest(alone)
    assert want and any("pi02" in k for k in want)
    assert got == want, sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))[:5]
    assert tree_files(together).keys() == tree_files(alone).keys()
