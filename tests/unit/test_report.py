"""`fluxforge report`: bars from the feature tree to a PNG of the expected size; clear errors."""
from __future__ import annotations

import struct
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fluxforge.cli import main
from fluxforge.commands.report import parse_range
from fluxforge.observe.report import PIXEL_SIZE, resolve_column

DAY1 = datetime(2024, 8, 8, tzinfo=timezone.utc)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _partitioned(data_dir: Path, kind: str, table: pa.Table, ts: np.ndarray, exchange: str, symbol: str,
                 segment: str) -> None:
    """Split rows into date partitions like the ETL does."""
    days = ts // 86_400_000
    for day in np.unique(days):
        date = datetime.fromtimestamp(int(day) * 86400, timezone.utc).strftime("%Y-%m-%d")
        part = data_dir / "features" / kind / f"exchange={exchange}" / f"symbol={symbol}" / f"date={date}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(days == day)), part / f"part-{segment}.parquet")


def write_bars(data_dir: Path, start: datetime, n: int, interval_s: int = 1, symbol: str = "BTC-USDT",
               exchange: str = "binance", segment: str = "seg-h-20240808T000000Z-000001", hf: bool = True) -> None:
    """n bars from start (columns as the feature engine names them) and, optionally, 1 s hf rows."""
    rng = np.random.default_rng(7)
    ts = np.array([int((start.timestamp() + i * interval_s) * 1000) for i in range(n)], dtype=np.int64)
    mid = 60000 + np.cumsum(rng.normal(0, 5, n))
    bars = pa.table({
        "timestamp": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")),
        "duration": pa.array(np.full(n, interval_s, dtype=np.int32)),
        "open": mid, "high": mid + 2, "low": mid - 2, "close": mid,
        "mean_relative_spread": np.abs(rng.normal(1e-4, 3e-5, n)), "sum_ofi": rng.normal(0, 3, n),
        "trade_count": rng.integers(0, 9, n),
    })
    _partitioned(data_dir, f"bars/interval={interval_s}s", bars, ts, exchange, symbol, segment)
    if hf:
        hts = np.arange(ts[0], ts[-1] + interval_s * 1000, 1000, dtype=np.int64)
        m = 60000 + np.cumsum(rng.normal(0, 2, len(hts)))
        rows = pa.table({"timestamp": pa.array(hts).cast(pa.timestamp("ms", tz="UTC")), "mid_price": m,
                         "microprice": m + rng.normal(0, 1, len(hts)), "kyle_lambda": rng.normal(0, 1, len(hts)),
                         "vpin": np.clip(rng.normal(0.3, 0.05, len(hts)), 0, 1)})
        _partitioned(data_dir, "hf", rows, hts, exchange, symbol, segment)


def report(tmp_path, *argv) -> int:
    return main(["report", "--config", "/dev/null", "--data-dir", str(tmp_path), *argv])


def test_default_chart_is_a_png_of_the_expected_size(tmp_path, capsys):
    write_bars(tmp_path, DAY1 + timedelta(hours=1), 600)
    out = tmp_path / "chart.png"
    assert report(tmp_path, "--symbol", "BTC/USDT", "-o", str(out)) == 0
    assert png_size(out) == PIXEL_SIZE
    msg = capsys.readouterr().out
    assert "600 bars of 1s" in msg
    assert "panels: price; spread (bps); OFI per bar; VPIN" in msg
    assert out.stat().st_size > 20_000  # drawn lines, not an empty canvas


def test_date_and_interval_choice(tmp_path, capsys):
    write_bars(tmp_path, DAY1 + timedelta(hours=23, minutes=50), 1200)  # crosses midnight
    write_bars(tmp_path, DAY1 + timedelta(hours=23, minutes=50), 20, interval_s=60)
    out = tmp_path / "d.png"
    assert report(tmp_path, "-s", "BTC-USDT", "--date", "2024-08-09", "-o", str(out)) == 0
    # 600 one-second bars on the 9th, only 10 one-minute bars: the 1 s interval is chosen
    assert "600 bars of 1s" in capsys.readouterr().out
    assert report(tmp_path, "-s", "BTC-USDT", "--date", "2024-08-08", "--interval", "60", "-o", str(out)) == 0
    assert "10 bars of 60s" in capsys.readouterr().out
    # no flag: the newest day
    assert report(tmp_path, "-s", "BTC-USDT", "-o", str(out)) == 0
    assert "600 bars of 1s" in capsys.readouterr().out


def test_last_window_is_relative_to_now(tmp_path, capsys):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    write_bars(tmp_path, now - timedelta(minutes=30), 1800)
    out = tmp_path / "l.png"
    assert report(tmp_path, "-s", "BTC/USDT", "--last", "10m", "-o", str(out)) == 0
    line = capsys.readouterr().out
    n = int(line.split(", ")[1].split(" bars")[0].replace(",", ""))
    assert 595 <= n <= 601
    assert png_size(out) == PIXEL_SIZE


def test_chosen_features_and_unknown_feature(tmp_path, capsys):
    write_bars(tmp_path, DAY1, 300)
    out = tmp_path / "f.png"
    assert report(tmp_path, "-s", "BTC/USDT", "--features", "vpin,close+mid,kyle", "-o", str(out)) == 0
    assert "panels: vpin; close + mid_price; kyle_lambda" in capsys.readouterr().out
    assert png_size(out) == PIXEL_SIZE
    assert report(tmp_path, "-s", "BTC/USDT", "--features", "gamma", "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert err.startswith("fluxforge: no bar or hf column matches 'gamma'; bar columns: duration, open, high")
    assert "hf has 4 columns" in err
    assert len(err.strip().splitlines()) == 1


def test_default_chart_without_hf_rows_draws_what_the_bars_have(tmp_path, capsys):
    write_bars(tmp_path, DAY1, 120, hf=False)
    out = tmp_path / "b.png"
    assert report(tmp_path, "-s", "BTC/USDT", "-o", str(out)) == 0
    assert "panels: price; spread (bps); OFI per bar\n" in capsys.readouterr().out
    assert png_size(out) == PIXEL_SIZE


def test_symbol_errors_name_what_exists(tmp_path, capsys):
    assert report(tmp_path, "-s", "BTC/USDT") == 1
    assert "no features under" in capsys.readouterr().err
    write_bars(tmp_path, DAY1, 10)
    write_bars(tmp_path, DAY1, 10, exchange="okx")
    assert report(tmp_path, "-s", "SOL/USDT") == 1
    assert "available: binance: BTC-USDT; okx: BTC-USDT" in capsys.readouterr().err
    assert report(tmp_path, "-s", "BTC/USDT") == 1
    assert "choose one with --exchange" in capsys.readouterr().err
    assert report(tmp_path, "-s", "BTC/USDT", "-e", "okx", "--date", "2024-08-07") == 1
    assert "no 1s bars for okx BTC-USDT between 2024-08-07 00:00" in capsys.readouterr().err


@pytest.mark.parametrize("tree", ["bars/interval=1s", "hf"])
def test_a_damaged_feature_file_is_one_clear_line_naming_it(tmp_path, capsys, tree):
    write_bars(tmp_path, DAY1 + timedelta(hours=1), 60)
    bad = next((tmp_path / "features" / tree).rglob("part-*.parquet"))
    bad.write_bytes(bad.read_bytes()[:-30])  # truncated: no footer
    assert report(tmp_path, "--symbol", "BTC/USDT", "-o", str(tmp_path / "chart.png")) == 1
    err = capsys.readouterr().err
    assert f"{bad}: cannot be read" in err and "fluxforge replay" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, needle", [
    (["--last", "yesterday"], "--last 'yesterday': expected a duration"),
    (["--date", "08/08/2024"], "--date '08/08/2024': expected YYYY-MM-DD"),
])
def test_bad_time_arguments(tmp_path, capsys, argv, needle):
    assert report(tmp_path, "-s", "BTC/USDT", *argv) == 2
    assert needle in capsys.readouterr().err


def test_missing_matplotlib_is_one_clear_line(tmp_path, capsys, monkeypatch):
    write_bars(tmp_path, DAY1, 10)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` sees when not installed
    assert report(tmp_path, "-s", "BTC/USDT", "-o", str(tmp_path / "x.png")) == 1
    assert "charts need matplotlib: pip install 'fluxforge[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_helpers():
    assert resolve_column("mid", ["timestamp", "mid_price", "mid_open"]) == "mid_price"
    assert resolve_column("ofi", ["ofi_l1", "ofi_l5"]) == "ofi_l1"
    assert resolve_column("vpin", ["vpin"]) == "vpin"
    assert resolve_column("x", ["vpin"]) is None
    now = datetime(2024, 8, 8, 12, tzinfo=timezone.utc)
    assert parse_range(None, "90m", now) == (now - timedelta(minutes=90), now)
    assert parse_range("2024-08-08", None) == (DAY1, DAY1 + timedelta(days=1))


def test_default_output_name_in_the_current_directory(tmp_path, capsys, monkeypatch):
    write_bars(tmp_path / "data", DAY1, 60)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--config", "/dev/null", "--data-dir", str(tmp_path / "data"), "-s", "BTC/USDT"]) == 0
    assert capsys.readouterr().out.startswith("wrote report-BTC-USDT-20240808.png: binance BTC-USDT, 60 bars")
    assert png_size(tmp_path / "report-BTC-USDT-20240808.png") == PIXEL_SIZE


def test_depth_profile_is_drawn_from_the_band_columns(tmp_path, capsys):
    write_bars(tmp_path, DAY1 + timedelta(hours=1), 120, hf=False)
    hts = np.arange(0, 120_000, 1000, dtype=np.int64) + int((DAY1 + timedelta(hours=1)).timestamp() * 1000)
    rng = np.random.default_rng(3)
    bands = [(0, 5), (5, 10), (10, 25), (25, 50), (50, 100)]
    cols = {"timestamp": pa.array(hts).cast(pa.timestamp("ms", tz="UTC"))}
    for lo, hi in bands:
        for side in ("bid", "ask"):
            cols[f"{side}_vol_band_{lo}_{hi}bps"] = rng.uniform(0, 10 * hi, len(hts))
    _partitioned(tmp_path, "hf", pa.table(cols), hts, "binance", "BTC-USDT", "seg-h-20240808T000000Z-000002")
    out = tmp_path / "depth.png"
    assert report(tmp_path, "--symbol", "BTC/USDT", "--depth-profile", "-o", str(out)) == 0
    assert png_size(out) == PIXEL_SIZE and out.stat().st_size > 20_000
    assert "depth profile of 120 hf rows" in capsys.readouterr().out
    from fluxforge.observe.depth_profile import band_columns, mean_profile, read_profile
    table, found = read_profile(tmp_path / "features", "binance", "BTC-USDT", None, None)
    assert found == [(float(lo), float(hi)) for lo, hi in bands]
    prof = mean_profile(table, found)
    assert np.allclose(prof["ask"], [np.nanmean(cols[f"ask_vol_band_{lo}_{hi}bps"]) for lo, hi in bands])
    assert band_columns(["bid_vol_band_0_5bps"]) == []   # one side only: not a profile


def test_depth_profile_without_band_columns_is_one_clear_line(tmp_path, capsys):
    write_bars(tmp_path, DAY1 + timedelta(hours=1), 60)
    assert report(tmp_path, "--symbol", "BTC/USDT", "--depth-profile", "-o", str(tmp_path / "d.png")) == 1
    assert "no hf depth band columns" in capsys.readouterr().err


def write_trade_bars(data_dir: Path, start: datetime, n: int, interval_s: int = 1,
                     segment: str = "seg-h-20240808T000000Z-000001", symbol: str = "BTC-USDT") -> pa.Table:
    """n trade bars (features/trade_bars/, the ETL's columns) with some empty ones; returns them."""
    rng = np.random.default_rng(11)
    ts = np.array([int((start.timestamp() + i * interval_s) * 1000) for i in range(n)], dtype=np.int64)
    o = 60000 + np.cumsum(rng.normal(0, 5, n))
    c = o + rng.normal(0, 4, n)
    empty = rng.random(n) < 0.2
    c[empty] = o[empty]
    table = pa.table({
        "timestamp": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")),
        "duration": pa.array(np.full(n, interval_s, dtype=np.int32)),
        "open": o, "high": np.maximum(o, c) + np.where(empty, 0, rng.uniform(0, 3, n)),
        "low": np.minimum(o, c) - np.where(empty, 0, rng.uniform(0, 3, n)), "close": c,
        "volume": np.where(empty, 0.0, rng.uniform(0.01, 4, n)), "trade_count": np.where(empty, 0, 3),
        "is_empty": empty,
    })
    _partitioned(data_dir, f"trade_bars/interval={interval_s}s", table, ts, "binance", symbol, segment)
    return table


def _axis(fig, title):
    return next((ax for ax in fig.axes if ax.get_ylabel() == title), None)


def test_trade_bar_candles_draw_the_rows_of_the_parquet(tmp_path, capsys):
    import matplotlib.dates as mdates
    from matplotlib.colors import to_rgba

    from fluxforge.observe.report import load_pyplot, load_symbol, render

    start = DAY1 + timedelta(hours=1)
    write_bars(tmp_path, start, 300)
    write_trade_bars(tmp_path, start, 300)
    out = tmp_path / "t.png"
    assert report(tmp_path, "--symbol", "BTC/USDT", "-o", str(out)) == 0
    assert "panels: price; spread (bps); OFI per bar; VPIN; trades (OHLC); trade volume\n" in capsys.readouterr().out
    assert png_size(out) == PIXEL_SIZE

    parquet = pq.read_table(next((tmp_path / "features/trade_bars/interval=1s").rglob("*.parquet")))
    rows = parquet.to_pydict()
    series, panels = load_symbol(tmp_path / "features", "binance", "BTC-USDT", 1)
    assert series.trades_interval_s == 1
    fig = render(series, panels)
    try:
        ax = _axis(fig, "trades (OHLC)")
        wicks, = ax.collections
        bodies, = ax.containers
        x = mdates.date2num(parquet.column("timestamp").cast(pa.int64()).to_numpy().astype("datetime64[ms]"))
        o, h, lo, c = (np.array(rows[k]) for k in ("open", "high", "low", "close"))
        assert len(bodies.patches) == len(wicks.get_segments()) == len(rows["timestamp"]) == 300
        assert np.allclose([p.get_x() for p in bodies.patches], x, rtol=0, atol=1e-9)
        assert np.allclose([p.get_y() for p in bodies.patches], np.minimum(o, c))
        assert np.allclose([p.get_height() for p in bodies.patches], np.abs(c - o))
        assert np.allclose([s[0][1] for s in wicks.get_segments()], lo)
        assert np.allclose([s[1][1] for s in wicks.get_segments()], h)
        green, red = to_rgba("tab:green"), to_rgba("tab:red")
        assert [p.get_facecolor() for p in bodies.patches] == [green if up else red for up in c >= o]
        volume, = _axis(fig, "trade volume").containers
        assert np.allclose([p.get_height() for p in volume.patches], rows["volume"])
    finally:
        load_pyplot().close(fig)


def test_report_without_trade_bars_has_no_trade_panels(tmp_path, capsys):
    from fluxforge.observe.report import load_pyplot, load_symbol, render

    write_bars(tmp_path, DAY1, 120)
    assert report(tmp_path, "-s", "BTC/USDT", "-o", str(tmp_path / "n.png")) == 0
    assert "panels: price; spread (bps); OFI per bar; VPIN\n" in capsys.readouterr().out
    series, panels = load_symbol(tmp_path / "features", "binance", "BTC-USDT", 1)
    assert series.trades is None
    fig = render(series, panels)
    assert _axis(fig, "trades (OHLC)") is None and len(fig.axes) == 4
    load_pyplot().close(fig)


def test_trade_bars_of_another_interval_are_the_nearest_finer_one(tmp_path):
    from fluxforge.observe.feature_tree import trade_bar_interval

    write_bars(tmp_path, DAY1, 10, interval_s=30)
    assert trade_bar_interval(tmp_path / "features", "binance", "BTC-USDT", 30) is None
    write_trade_bars(tmp_path, DAY1, 10, interval_s=60)
    assert trade_bar_interval(tmp_path / "features", "binance", "BTC-USDT", 30) == 60  # nothing finer: the finest
    write_trade_bars(tmp_path, DAY1, 60, interval_s=5)
    write_trade_bars(tmp_path, DAY1, 300, interval_s=1)
    assert trade_bar_interval(tmp_path / "features", "binance", "BTC-USDT", 30) == 5
    assert trade_bar_interval(tmp_path / "features", "binance", "BTC-USDT", 60) == 60


def test_a_trades_only_symbol_is_charted_from_its_trade_bars(tmp_path, capsys):
    """ETH has trade bars only (and BTC has book bars): found through trade_bars/, its newest day and
    interval chosen from them, and only the trade panels drawn, from the rows of the Parquet."""
    from fluxforge.observe.report import load_pyplot, load_symbol, render

    write_bars(tmp_path, DAY1 + timedelta(days=1), 120)
    trades = write_trade_bars(tmp_path, DAY1 + timedelta(hours=2), 240, interval_s=5, symbol="ETH-USDT")
    write_trade_bars(tmp_path, DAY1 + timedelta(hours=2), 1200, interval_s=1, symbol="ETH-USDT")
    out = tmp_path / "eth.png"
    assert report(tmp_path, "-s", "ETH/USDT", "-o", str(out)) == 0
    assert capsys.readouterr().out == (f"wrote {out}: binance ETH-USDT, 240 trade bars of 5s, "
                                       "panels: trades (OHLC); trade volume\n")
    assert png_size(out) == PIXEL_SIZE
    assert report(tmp_path, "-s", "ETH/USDT", "-o", str(out), "--date", "2024-08-09") == 1
    assert "no 1s bars for binance ETH-USDT between 2024-08-09" in capsys.readouterr().err
    series, panels = load_symbol(tmp_path / "features", "binance", "ETH-USDT", 5)
    assert series.rows == 0 and series.trades_interval_s == 5
    fig = render(series, panels)
    try:
        assert [ax.get_ylabel() for ax in fig.axes] == ["trades (OHLC)", "trade volume"]
        bodies, = _axis(fig, "trades (OHLC)").containers
        o, c = trades.column("open").to_numpy(), trades.column("close").to_numpy()
        assert np.allclose([p.get_height() for p in bodies.patches], np.abs(c - o))
        volume, = _axis(fig, "trade volume").containers
        assert np.allclose([p.get_height() for p in volume.patches], trades.column("volume").to_numpy())
        assert "5s trade bars" in fig._suptitle.get_text()
    finally:
        load_pyplot().close(fig)


def test_a_ticker_only_symbol_is_charted_from_its_ticker_features(tmp_path, capsys):
    from fluxforge.observe.report import load_pyplot, load_symbol, render

    write_bars(tmp_path, DAY1, 60)
    n = 500
    ts = np.array([int(DAY1.timestamp() * 1000) + 3_600_000 + 700 * i for i in range(n)], dtype=np.int64)
    mid = 150 + np.cumsum(np.random.default_rng(3).normal(0, 0.05, n))
    rel = np.full(n, 2e-4)
    rel[::7] = np.nan  # a crossed or one-sided quote: no spread
    ticker = pa.table({"timestamp": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")), "bid": mid - 0.01,
                       "ask": mid + 0.01, "mid_price": mid, "relative_spread": rel})
    _partitioned(tmp_path, "ticker", ticker, ts, "binance", "SOL-USDT", "seg-h-20240808T000000Z-000001")
    out = tmp_path / "sol.png"
    assert report(tmp_path, "-s", "SOL/USDT", "-o", str(out)) == 0
    assert capsys.readouterr().out == f"wrote {out}: binance SOL-USDT, 500 ticker rows, panels: price; spread (bps)\n"
    assert png_size(out) == PIXEL_SIZE
    series, panels = load_symbol(tmp_path / "features", "binance", "SOL-USDT", None)
    fig = render(series, panels)
    try:
        assert [ax.get_ylabel() for ax in fig.axes] == ["price", "spread (bps)"]
        line, = _axis(fig, "price").lines
        assert np.array_equal(line.get_ydata(), mid)
        spread, = _axis(fig, "spread (bps)").lines
        assert np.allclose(spread.get_ydata(), rel * 1e4, equal_nan=True)
    finally:
        load_pyplot().close(fig)
