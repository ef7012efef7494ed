"""Per-trade features through the whole ETL on the real Binance captures, every row against the reference.

The captures' books and trades become bronze segments (split by receive time like the
collector rotates), with what real streams do to trades made to happen: some trades
have no side, some are redelivered seconds later (often into the next segment), and a
`gap` event resets BTC/USDT half-way.  `EtlRunner` writes features/trades/; each row
must equal tests/reference/per_trade_reference.py (from the definitions) to 1e-9 relative,
and the trades not written yet must be exactly those the checkpoint still carries.
"""
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from documented_schema import assert_documented
from etl_support import write_segments
from test_etl_realdata import _reset_times

from fluxforge.bronze import schemas as bronze
from fluxforge.config import FeatureOptions, TradeOptions
from fluxforge.etl.runner import EtlRunner
from fluxforge.features.trade_layout import per_trade_fields
from tests.reference.compare import assert_value
from tests.reference.per_trade_reference import per_trade

SYMBOLS = {"BTC/USDT": "btcusdt_20240808.gz", "ETH/USDT": "ethusdt_20240808.gz"}
HORIZONS = [1, 5, 30]  # the reference walks every window: keep them to a few hundred trades


def _bronze(shared_capture) -> dict[str, pa.Table]:
    from tests.reference.binance_capture import load

    books, trades = [], []
    for sym, name in SYMBOLS.items():
        b, t = load(shared_capture / name, symbol=sym)
        books.append(b)
        side = t.column("side").to_pylist()
        t = t.set_column(t.schema.get_field_index("side"), "side",
                         pa.array([None if i % 23 == 0 else s for i, s in enumerate(side)], pa.string()))
        again = t.take(pa.array(range(5, t.num_rows, 50)))  # redelivered 2 s later, original time and id
        again = again.set_column(again.schema.get_field_index("recv_ns"), "recv_ns",
                                 pc.add(again.column("recv_ns"), 2_000_000_000)).cast(t.schema)
        trades += [t, again]
    books = pa.concat_tables(books).sort_by("recv_ns")
    recv = books.column("recv_ns").to_numpy()
    mid = int(recv[len(recv) // 2])
    events = pa.table({"exchange": ["binance"], "symbol": ["BTC/USDT"], "channel": ["orderbook"],
                       "timestamp": [mid // 1_000_000], "recv_ns": [mid], "event": ["gap"],
                       "reason": ["test gap"], "count": [None]}, schema=bronze.EVENTS)
    return {"orderbook": books, "trades": pa.concat_tables(trades).sort_by("recv_ns"), "events": events}


@pytest.mark.realdata
@pytest.mark.slow
def test_real_captures_through_the_etl_match_the_reference(tmp_path, shared_capture):
    tables = _bronze(shared_capture)
    start_ms = int(pc.min(tables["orderbook"].column("recv_ns")).as_py()) // 1_000_000 - 1000
    write_segments(tmp_path / "segments/ready", tables, 8, start_ms=start_ms, seconds=350)
    opts = TradeOptions(bar_durations=[], dollar_bar_size=0.0, per_trade=True, horizons=HORIZONS)
    runner = EtlRunner(tmp_path / "segments", tmp_path / "features", tmp_path / "state",
                       FeatureOptions(bar_durations=[], hf_emit_interval=60.0), trade_options=opts)
    assert [o.state for o in runner.run_once()] == ["done"] * 8
    written = ds.dataset(tmp_path / "features/trades", partitioning="hive").to_table()  # files in segment order
    assert_documented(written.schema, "`trades`", opts, partitions=("exchange", "symbol", "date"))
    events = tables["events"].to_pylist()
    for sym in SYMBOLS:
        ours = written.filter(pc.equal(written.column("symbol"), sym.replace("/", "-")))
        books = tables["orderbook"].filter(pc.equal(tables["orderbook"].column("symbol"), sym))
        raw = tables["trades"].filter(pc.equal(tables["trades"].column("symbol"), sym))
        resets = _reset_times(books, [e["recv_ns"] for e in events if e["symbol"] == sym])
        assert len(resets) == (1 if sym == "BTC/USDT" else 0)
        # the definition's input: each trade id once (its first delivery), in exchange-time order
        # (ties in delivery order)
        first = {}
        for r in raw.to_pylist():
            first.setdefault(r["trade_id"], r)
        trades = sorted(first.values(), key=lambda r: r["timestamp"])
        want = per_trade([(r["timestamp"], r["price"], r["amount"], {"buy": 1, "sell": -1}.get(r["side"], 0))
                          for r in trades], resets, HORIZONS)
        carried = runner.bank.state(("binance", sym)).carry.trades
        assert ours.num_rows > 4000 and ours.num_rows + (carried.num_rows if carried else 0) == len(want), sym
        names = [n for n in per_trade_fields(HORIZONS) if n not in ("timestamp", "trade_id")]
        got = ours.to_pydict()
        for i, w in enumerate(want[:ours.num_rows]):
            assert round(got["timestamp"][i].timestamp() * 1000) == w["timestamp"], (sym, i)
            assert got["trade_id"][i] == trades[i]["trade_id"], (sym, i)
            for name in names:
                assert_value(got[name][i], w[name], (sym, i, name))
        assert sum(v is None for v in got["side"]) > 100 and pc.sum(ours.column("is_buy")).as_py() > 1000
