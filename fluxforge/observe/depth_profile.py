"""`fluxforge report --depth-profile`: where the liquidity sits, from the hf depth bands.

Why its own chart: the band columns (`bid_vol_band_{lo}_{hi}bps`, `ask_vol_band_…`) come
from the full rebuilt book (docs/features.md, "Book rebuild"), so they show how much size
rests at each distance from mid -- a shape, not a time series.  The top panel is the
profile (mean size per band over the range, bids left of mid, asks right, each bar as wide
as its band); the bottom panel is the same bands over time (asks up, bids down, stacked
nearest first), so a wall that appears or a side that thins is visible.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from .feature_tree import hf_columns, read_rows
from .report import DPI, PIXEL_SIZE, ReportError, load_pyplot

_BAND = re.compile(r"^(bid|ask)_vol_band_([0-9.]+)_([0-9.]+)bps$")


def band_columns(columns: list[str]) -> list[tuple[float, float]]:
    """The (lo, hi) bps bands present for both sides, nearest first."""
    found: dict[str, set] = {"bid": set(), "ask": set()}
    for c in columns:
        m = _BAND.match(c)
        if m:
            found[m[1]].add((float(m[2]), float(m[3])))
    return sorted(found["bid"] & found["ask"])


def _name(side: str, lo: float, hi: float) -> str:
    return f"{side}_vol_band_{lo:g}_{hi:g}bps"


def read_profile(features_dir: Path, exchange: str, symbol: str, start: datetime | None,
                 end: datetime | None) -> tuple[pa.Table, list[tuple[float, float]]]:
    bands = band_columns(hf_columns(features_dir, exchange, symbol))
    if not bands:
        raise ReportError(f"no hf depth band columns for {exchange} {symbol} (run the ETL with bands_bps)")
    cols = ["timestamp"] + [_name(s, lo, hi) for lo, hi in bands for s in ("bid", "ask")]
    table = read_rows(features_dir, None, exchange, symbol, start, end, cols)
    if table.num_rows == 0:
        raise ReportError(f"no hf rows for {exchange} {symbol} in that range")
    return table, bands


def mean_profile(table: pa.Table, bands: list[tuple[float, float]]) -> dict[str, np.ndarray]:
    """Mean size per band and side over the rows (NaN rows, e.g. crossed books, skipped)."""
    out = {}
    for side in ("bid", "ask"):
        vals = np.vstack([table.column(_name(side, lo, hi)).to_numpy(zero_copy_only=False).astype(float)
                          for lo, hi in bands])
        with np.errstate(all="ignore"):
            out[side] = np.nanmean(vals, axis=1) if vals.shape[1] else np.zeros(len(bands))
    return out


def draw_depth_profile(features_dir: Path, exchange: str, symbol: str, out: Path,
                       start: datetime | None = None, end: datetime | None = None) -> int:
    """Write the depth-profile PNG; returns the number of hf rows it summarises."""
    table, bands = read_profile(features_dir, exchange, symbol, start, end)
    prof = mean_profile(table, bands)
    plt = load_pyplot()
    import matplotlib.dates as mdates

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(PIXEL_SIZE[0] / DPI, PIXEL_SIZE[1] / DPI), dpi=DPI)
    lo = np.array([b[0] for b in bands])
    width = np.array([b[1] - b[0] for b in bands])
    top.bar(-lo, prof["bid"], width=-width, align="edge", color="tab:green", alpha=0.8, label="bids")
    top.bar(lo, prof["ask"], width=width, align="edge", color="tab:red", alpha=0.8, label="asks")
    top.axvline(0, color="grey", linewidth=0.8)
    top.set_xlabel("distance from mid (bps; bids left, asks right)")
    top.set_ylabel("mean size in band (base)")
    top.legend(loc="upper right", fontsize=8)
    top.grid(True, alpha=0.3)
    times = table.column("timestamp").to_numpy(zero_copy_only=False).astype("datetime64[ms]")
    cmap = plt.get_cmap("viridis", len(bands))
    base_a = np.zeros(len(times))
    base_b = np.zeros(len(times))
    for k, (b_lo, b_hi) in enumerate(bands):
        a = np.nan_to_num(table.column(_name("ask", b_lo, b_hi)).to_numpy(zero_copy_only=False).astype(float))
        b = np.nan_to_num(table.column(_name("bid", b_lo, b_hi)).to_numpy(zero_copy_only=False).astype(float))
        bottom.fill_between(times, base_a, base_a + a, step="post", color=cmap(k), label=f"{b_lo:g}-{b_hi:g} bps")
        bottom.fill_between(times, -base_b, -(base_b + b), step="post", color=cmap(k))
        base_a += a
        base_b += b
    bottom.axhline(0, color="grey", linewidth=0.8)
    bottom.set_ylabel("size by band (asks up, bids down)")
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(bottom.xaxis.get_major_locator()))
    bottom.legend(loc="upper left", fontsize=8, ncol=len(bands))
    bottom.grid(True, alpha=0.3)
    fig.suptitle(f"{exchange} {symbol}  depth profile from the rebuilt book  ({table.num_rows:,} hf rows)")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    plt.close(fig)
    return table.num_rows
