"""A picture of the market from the features: price, spread, order-flow imbalance, VPIN, trades.

Why three sources: the bars carry mid OHLC, spread and summed OFI per interval,
but microprice and VPIN are per-snapshot features that only the hf rows carry,
so the default chart draws the bars and overlays those hf series on the same
time axis (no resampling, nothing invented between rows).  What traded is a third
view: the trade bars (features/trade_bars/) are drawn as candlesticks with their
volume below, when the ETL wrote any for the symbol.  A symbol without bars (trades
or tickers only) is charted from what it has: trade bars alone, and the ticker
features' mid and relative spread in the price and spread panels; a panel with no
data is left out.

Why matplotlib is imported lazily: it is the optional `plot` extra, so a
headless Pi install stays small; only drawing needs it and the error says how
to get it.  The Agg backend is forced, so no display is ever needed.

`--features` takes a spec like "close+microprice,sum_ofi,kyle_lambda": commas
separate panels, '+' shares a panel; each name is a bar column, else an hf
column, else the stem of one (`mid` matches `mid_price`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..features.ticker_layout import TICKER
from .feature_tree import BarSeries, NoBars, has_rows, hf_columns, no_rows, read_bars, read_rows, read_trade_bars

_SUFFIXES = ("", "_close", "_last", "_mean", "_sum", "_price")
PIXEL_SIZE = (1600, 1000)
DPI = 100


class ReportError(Exception):
    """A chart cannot be drawn (missing extra, unknown feature, no rows): one clear line."""


@dataclass(frozen=True)
class Line:
    source: str            # "bars" | "hf" | "trades" (trade bars) | "ticker"
    column: str
    label: str
    scale: float = 1.0
    kind: str = "line"     # "line" | "bar" (per-bar flows, drawn around zero) | "candles" | "volume" (trades)


@dataclass(frozen=True)
class Panel:
    title: str
    lines: list[Line] = field(default_factory=list)


# commands/report.py describes these panels in its --help (without importing this module)
DEFAULT_PANELS = [
    Panel("price", [Line("bars", "close", "mid (bar close)"), Line("hf", "microprice", "microprice"),
                    Line("ticker", "mid_price", "ticker mid")]),
    Panel("spread (bps)", [Line("bars", "mean_relative_spread", "mean relative spread", scale=1e4),
                           Line("ticker", "relative_spread", "ticker relative spread", scale=1e4)]),
    Panel("OFI per bar", [Line("bars", "sum_ofi", "order-flow imbalance", kind="bar")]),
    Panel("VPIN", [Line("hf", "vpin", "VPIN")]),
]
TRADE_PANELS = [
    Panel("trades (OHLC)", [Line("trades", "close", "trade bars", kind="candles")]),
    Panel("trade volume", [Line("trades", "volume", "volume (base)", kind="volume")]),
]
TICKER_COLUMNS = ["timestamp", "mid_price", "relative_spread"]


def resolve_column(name: str, available: list[str]) -> str | None:
    """`name` itself, `name` + a usual suffix, else the first column starting with `name_`."""
    for suffix in _SUFFIXES:
        if name + suffix in available:
            return name + suffix
    starts = [c for c in available if c.startswith(name + "_")]
    return starts[0] if starts else None


def default_panels(bar_columns: list[str], hf_columns: list[str], trade_columns: list[str] = (),
                   ticker_columns: list[str] = ()) -> list[Panel]:
    """DEFAULT_PANELS (+ TRADE_PANELS) without the lines whose column is absent (e.g. VPIN disabled,
    no hf rows, no trade bars, no ticker rows)."""
    have = {"bars": set(bar_columns), "hf": set(hf_columns), "trades": set(trade_columns),
            "ticker": set(ticker_columns)}
    panels = [Panel(p.title, [ln for ln in p.lines if ln.column in have[ln.source]])
              for p in DEFAULT_PANELS + TRADE_PANELS]
    return [p for p in panels if p.lines]


def parse_panels(spec: str, bar_columns: list[str], hf_columns: list[str]) -> list[Panel]:
    """Panels for a user's spec; an unknown name is an error listing what exists."""
    bars = [c for c in bar_columns if c != "timestamp"]
    hf = [c for c in hf_columns if c != "timestamp"]
    panels = []
    for group in filter(None, (g.strip() for g in spec.split(","))):
        lines = []
        for name in filter(None, (n.strip() for n in group.split("+"))):
            for source, columns in (("bars", bars), ("hf", hf)):
                col = resolve_column(name, columns)
                if col is not None:
                    lines.append(Line(source, col, col, kind="bar" if "ofi" in col and source == "bars" else "line"))
                    break
            else:
                raise ReportError(f"no bar or hf column matches {name!r}; bar columns: {', '.join(bars)}"
                                  + (f"; hf has {len(hf)} columns (fluxforge inspect an hf file)" if hf else ""))
        if lines:
            panels.append(Panel(" + ".join(ln.column for ln in lines), lines))
    if not panels:
        raise ReportError(f"no panel in --features {spec!r}")
    return panels


def needs_hf(panels: list[Panel]) -> list[str]:
    return sorted({ln.column for p in panels for ln in p.lines if ln.source == "hf"})


def load_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ReportError("charts need matplotlib: pip install 'fluxforge[plot]' "
                          "(or apt install python3-matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _xy(table: pa.Table, column: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    times = table.column("timestamp").to_numpy(zero_copy_only=False).astype("datetime64[ms]")
    values = table.column(column).to_numpy(zero_copy_only=False).astype(float, copy=False) * scale
    return times, values


def candles(ax, table: pa.Table, interval_s: int, label: str):
    """Candlesticks of OHLC bars: a high-low wick and an open-close body (green up, red down) per row.

    Returns (wicks LineCollection, bodies BarContainer): one segment and one rectangle per row, in order."""
    times = table.column("timestamp").to_numpy(zero_copy_only=False).astype("datetime64[ms]")
    o, h, lo, c = (table.column(k).to_numpy(zero_copy_only=False).astype(float) for k in ("open", "high", "low", "close"))
    width = np.timedelta64(int(interval_s * 800), "ms")
    colors = _direction_colors(o, c)
    wicks = ax.vlines(times + width // 2, lo, h, colors=colors, linewidth=0.8, label=label)
    bodies = ax.bar(times, np.abs(c - o), bottom=np.minimum(o, c), width=width, align="edge", color=colors,
                    edgecolor=colors, linewidth=0.6)  # the edge keeps a flat (open == close) bar visible
    return wicks, bodies


def volume_bars(ax, table: pa.Table, interval_s: int, label: str):
    """Traded volume per bar, coloured like its candle."""
    times, volume = _xy(table, "volume", 1.0)
    o, c = (table.column(k).to_numpy(zero_copy_only=False).astype(float) for k in ("open", "close"))
    return ax.bar(times, volume, width=np.timedelta64(int(interval_s * 800), "ms"), align="edge", label=label,
                  color=_direction_colors(o, c))


def _direction_colors(o: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Green where a bar closed at or above its open, else red (an empty bar before any trade is NaN: red)."""
    with np.errstate(invalid="ignore"):
        return np.where(c >= o, "tab:green", "tab:red")


def render(series: BarSeries, panels: list[Panel], title: str | None = None):
    """The figure of PIXEL_SIZE with one time-aligned panel per entry of `panels` (closed by the caller)."""
    tables = _tables(series)
    panels = drawable(series, panels)
    if not panels:
        raise ReportError(f"no rows to draw for {series.exchange} {series.symbol} in that range")
    plt = load_pyplot()
    import matplotlib.dates as mdates

    fig, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(PIXEL_SIZE[0] / DPI, PIXEL_SIZE[1] / DPI), dpi=DPI)
    for ax, panel in zip(axes[:, 0], panels):
        for i, line in enumerate(panel.lines):
            table = tables[line.source]
            if not _has_rows(table):
                continue
            if line.kind == "candles":
                candles(ax, table, series.trades_interval_s, f"{line.label} ({series.trades_interval_s}s)")
                continue
            if line.kind == "volume":
                volume_bars(ax, table, series.trades_interval_s, line.label)
                continue
            times, values = _xy(table, line.column, line.scale)
            if line.kind == "bar":
                width = np.timedelta64(int(series.interval_s * 800), "ms")
                ax.bar(times, values, width=width, label=line.label, align="edge",
                       color=np.where(values >= 0, "tab:green", "tab:red"))
                ax.axhline(0, color="grey", linewidth=0.6)
            else:
                if line.source == "bars":  # a bar holds its value until the next one starts: close the last step
                    times = np.append(times, times[-1] + np.timedelta64(series.interval_s * 1000, "ms"))
                    values = np.append(values, values[-1])
                # later lines thinner, so overlapping series (mid, microprice) both stay visible
                ax.plot(times, values, label=line.label, linewidth=1.6 if i == 0 else 0.9,
                        drawstyle="steps-post" if line.source == "bars" else "default")
        ax.set_ylabel(panel.title, fontsize=9)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)  # prices as prices, not 5.99999e4 + x
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    ax = axes[-1, 0]
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_xlabel("time (UTC)")
    first = next(t for t in (series.table, series.trades, series.ticker, series.hf) if _has_rows(t))
    times = first.column("timestamp").to_numpy(zero_copy_only=False).astype("datetime64[s]")
    what = f"{series.interval_s}s bars" if series.rows else \
        f"{series.trades_interval_s}s trade bars" if _has_rows(series.trades) else "ticker"
    fig.suptitle(title or f"{series.exchange} {series.symbol}  {what}  "
                 f"{str(times[0]).replace('T', ' ')} .. {str(times[-1]).replace('T', ' ')} UTC  ({series.describe()})")
    fig.tight_layout()
    return fig


def _has_rows(table: pa.Table | None) -> bool:
    return table is not None and table.num_rows > 0


def _tables(series: BarSeries) -> dict[str, pa.Table | None]:
    return {"bars": series.table, "hf": series.hf, "trades": series.trades, "ticker": series.ticker}


def drawable(series: BarSeries, panels: list[Panel]) -> list[Panel]:
    """The panels with at least one line whose source has rows (what `render` draws)."""
    tables = _tables(series)
    return [p for p in panels if any(_has_rows(tables[ln.source]) for ln in p.lines)]


def draw(series: BarSeries, panels: list[Panel], out: Path, title: str | None = None) -> Path:
    """Write a PNG of PIXEL_SIZE with one time-aligned panel per entry of `panels`."""
    fig = render(series, panels, title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    load_pyplot().close(fig)
    return out


def load_symbol(features_dir: Path, exchange: str, symbol: str, interval_s: int | None,
                start: datetime | None = None, end: datetime | None = None,
                spec: str | None = None) -> tuple[BarSeries, list[Panel]]:
    """The bars (the hf columns the panels need, the trade bars; without bars, the ticker rows) of one
    symbol, and the panels to draw.  interval_s: of the bars, else of the trade bars (None: neither)."""
    series = read_bars(features_dir, interval_s, exchange, symbol, start, end) if interval_s is not None \
        else BarSeries(exchange, symbol, 0, no_rows())
    hf_cols = hf_columns(features_dir, exchange, symbol)
    if spec:
        panels = parse_panels(spec, series.table.column_names, hf_cols)
    else:
        if interval_s is not None:
            series = read_trade_bars(series, features_dir, start, end)
        if series.rows == 0 and has_rows(features_dir, exchange, symbol, TICKER):
            ticker = read_rows(features_dir, None, exchange, symbol, start, end, TICKER_COLUMNS, TICKER)
            series = replace(series, ticker=ticker if ticker.num_rows else None)
        trade_cols = series.trades.column_names if series.trades is not None else []
        ticker_cols = series.ticker.column_names if series.ticker is not None else []
        panels = default_panels(series.table.column_names if series.rows else [], hf_cols, trade_cols, ticker_cols)
    if series.rows == 0 and series.trades is None and series.ticker is None:
        span = f" between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC" if start and end else ""
        raise NoBars(f"no {interval_s}s bars for {exchange} {symbol}{span}" if interval_s is not None
                     else f"no bars, trade bars or ticker rows for {exchange} {symbol}{span}")
    wanted = needs_hf(panels)
    if wanted:
        series = replace(series, hf=read_rows(features_dir, None, exchange, symbol, start, end, ["timestamp", *wanted]))
    return series, panels


def chart_symbol(features_dir: Path, exchange: str, symbol: str, interval_s: int, out: Path,
                 start: datetime | None = None, end: datetime | None = None, spec: str | None = None,
                 title: str | None = None) -> tuple[BarSeries, list[Panel]]:
    """Read the bars (and the hf columns the panels need) of one symbol and draw them to `out`."""
    series, panels = load_symbol(features_dir, exchange, symbol, interval_s, start, end, spec)
    draw(series, panels, out, title)
    return series, drawable(series, panels)
