"""A picture of the market from the bars: price, spread, order-flow imbalance and VPIN.

Why matplotlib is imported lazily: it is the optional `plot` extra, so a
headless Pi install stays small; only drawing needs it and the error says how
to get it.  The Agg backend is forced, so no display is ever needed.

Panels are given as a spec like "mid+microprice,spread,ofi,vpin": commas
separate panels, '+' puts columns on one panel.  Each name is a bar column or
the stem of one (`mid` matches `mid_close` ...), so the chart survives small
naming changes in the feature set and the user can chart any feature.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .feature_tree import BarSeries

DEFAULT_PANELS = "mid+microprice,spread_bps,ofi,vpin"
_SUFFIXES = ("", "_close", "_last", "_mean", "_sum", "_end")
PIXEL_SIZE = (1600, 1000)
DPI = 100


class ReportError(Exception):
    """A chart cannot be drawn (missing extra, unknown feature, no rows): one clear line."""


@dataclass(frozen=True)
class Panel:
    title: str          # as the user named it: "mid + microprice"
    columns: list[str]  # the bar columns drawn


def resolve_column(name: str, available: list[str]) -> str | None:
    """`name` itself, `name` + a usual aggregate suffix, else the first column starting with `name`."""
    for suffix in _SUFFIXES:
        if name + suffix in available:
            return name + suffix
    starts = [c for c in available if c.startswith(name + "_")]
    return starts[0] if starts else None


def resolve_panels(spec: str, available: list[str], strict: bool) -> list[Panel]:
    """Panels of existing columns; unknown names raise (strict) or are left out (default spec)."""
    panels = []
    for group in filter(None, (g.strip() for g in spec.split(","))):
        cols, names = [], []
        for name in filter(None, (n.strip() for n in group.split("+"))):
            col = resolve_column(name, available)
            if col is None and strict:
                shown = ", ".join(c for c in available if c != "timestamp")
                raise ReportError(f"no bar column matches {name!r}; columns: {shown}")
            if col is not None:
                cols.append(col)
                names.append(name)
        if cols:
            panels.append(Panel(" + ".join(names), cols))
    if not panels:
        raise ReportError(f"none of {spec!r} is a bar column")
    return panels


def load_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ReportError("charts need matplotlib: pip install 'fluxforge[plot]' "
                          "(or apt install python3-matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _numpy(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).to_numpy(zero_copy_only=False).astype(float, copy=False)


def draw(series: BarSeries, panels: list[Panel], out: Path, title: str | None = None) -> Path:
    """Write a PNG of PIXEL_SIZE with one time-aligned panel per entry of `panels`."""
    if series.rows == 0:
        raise ReportError(f"no bars for {series.exchange} {series.symbol} at {series.interval_s}s in that range")
    plt = load_pyplot()
    import matplotlib.dates as mdates

    times = series.table.column("timestamp").to_numpy(zero_copy_only=False).astype("datetime64[ms]")
    fig, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(PIXEL_SIZE[0] / DPI, PIXEL_SIZE[1] / DPI), dpi=DPI)
    for ax, panel in zip(axes[:, 0], panels):
        for i, col in enumerate(panel.columns):
            values = _numpy(series.table, col)
            if "ofi" in col:  # flows are per-bar quantities: bars around zero read best
                width = np.timedelta64(int(series.interval_s * 800), "ms")
                ax.bar(times, values, width=width, label=col,
                       color=np.where(values >= 0, "tab:green", "tab:red"))
                ax.axhline(0, color="grey", linewidth=0.6)
            else:
                # later lines thinner, so overlapping series (mid, microprice) both stay visible
                ax.plot(times, values, label=col, linewidth=1.4 if i == 0 else 0.8, alpha=1.0 if i == 0 else 0.85)
        ax.set_ylabel(panel.title, fontsize=9)
        ax.grid(True, alpha=0.3)
        if len(panel.columns) > 1:
            ax.legend(loc="upper left", fontsize=8)
    ax = axes[-1, 0]
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_xlabel("time (UTC)")
    first, last = times[0], times[-1]
    fig.suptitle(title or f"{series.exchange} {series.symbol}  {series.interval_s}s bars  "
                 f"{str(first)[:19].replace('T', ' ')} .. {str(last)[:19].replace('T', ' ')} UTC  ({series.rows:,} bars)")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    plt.close(fig)
    return out
