"""Names, types and kernel arguments of the feature columns, derived from FeatureOptions.

Why a module: the Cython engine writes a dense float64 block whose column order
is fixed by book_struct.pxd / book_engine.pyx; this is the single Python place
that names those columns, turns options into kernel arguments and turns the
dense block into typed Arrow tables (hf rows and bars).
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pyarrow as pa

from ..config import FeatureOptions
from . import book_arrays
from .pending_tables import PendingTable

STRUCT_SCALARS = [
    "best_bid", "best_ask", "mid_price", "spread", "relative_spread", "microprice", "micro_minus_mid",
    "weighted_mid", "total_imbalance", "total_bid_volume", "total_ask_volume", "bid_slope", "ask_slope",
    "bid_concentration", "ask_concentration", "center_of_gravity", "cog_vs_mid", "smart_bid_depth",
    "smart_ask_depth", "smart_depth_imbalance", "vwap_bid_5", "vwap_ask_5", "vwap_spread", "book_pressure",
    "lambda_like", "book_depth", "bid_levels", "ask_levels", "is_crossed", "is_locked",
    "imbalance_top3", "imbalance_top5", "imbalance_top10", "bid_depth_slope", "ask_depth_slope",
    "depth_slope_asymmetry", "bid_depth_decay_5", "ask_depth_decay_5", "bid_50pct_depth_level",
    "ask_50pct_depth_level", "book_convexity",
]
DYNAMIC = ["log_return_step", "mid_velocity", "mid_accel", "ofi_step", "mlofi_step", "amihud_like"]
ROLLING = ["rv", "ret_std", "mean_return", "ofi_sum", "mlofi_sum", "tfi", "trade_vol", "mean_spread"]
TIME = ["hour_of_day", "day_of_week", "minute_of_hour", "is_weekend"]
INT_COLUMNS = {"book_depth", "bid_levels", "ask_levels", "hour_of_day", "day_of_week", "minute_of_hour"}
BOOL_COLUMNS = {"is_crossed", "is_locked", "is_weekend"}

BAR_FIELDS = [
    "timestamp", "open", "high", "low", "close", "mean_spread", "min_spread", "max_spread",
    "mean_relative_spread", "mean_l1_imbalance", "sum_ofi", "realized_variance", "count", "valid_count",
    "crossed_count", "buy_volume", "sell_volume", "trade_vwap", "trade_count", "is_empty",
]
BAR_INT = {"count", "valid_count", "crossed_count", "trade_count"}


def fmt(x: float) -> str:
    """Number in a column name: 5 -> '5', 2.5 -> '2.5'."""
    return f"{x:g}"


def band_names(options: FeatureOptions) -> list[tuple[float, float]]:
    edges = list(options.bands_bps)
    return list(zip([0.0] + edges[:-1], edges))


def extra_names(options: FeatureOptions) -> list[str]:
    w = fmt(options.momentum_window)
    return [
        f"depth_0_{fmt(options.bands_bps[0])}bps_sigma", "spread_regime", "spread_regime_tight_frac",
        "spread_regime_wide_frac", "spread_percentile", "kyle_lambda", "kyle_lambda_r2", "vpin",
        f"slope_momentum_mean_{w}s", f"slope_momentum_std_{w}s", f"cog_momentum_mean_{w}s", f"cog_momentum_std_{w}s",
    ]


def kernel_names(options: FeatureOptions) -> list[str]:
    """Columns of the kernel's dense block, in kernel order."""
    n = options.max_levels
    names = list(STRUCT_SCALARS)
    for side, what in (("bid", "price"), ("bid", "size"), ("ask", "price"), ("ask", "size")):
        names += [f"{side}_{what}_L{i}" for i in range(n)]
    names += [f"imbalance_L{i}" for i in range(n)]
    bands = band_names(options)
    for prefix in ("bid_vol_band", "ask_vol_band", "imb_band"):
        names += [f"{prefix}_{fmt(lo)}_{fmt(hi)}bps" for lo, hi in bands]
    names += DYNAMIC
    for h in options.horizons:
        names += [f"{name}_{fmt(h)}s" for name in ROLLING]
    names += extra_names(options)
    return names


def hf_names(options: FeatureOptions) -> list[str]:
    names = ["timestamp", "nonce"] + kernel_names(options) + TIME
    if options.keep_raw_arrays:
        names += ["bid_px", "bid_sz", "ask_px", "ask_sz"]
    return names


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000.0))


def kernel_args(options: FeatureOptions) -> dict:
    """Keyword arguments of fluxforge._kernels.book_engine.BookEngine."""
    return dict(
        max_levels=options.max_levels,
        edges_bps=[float(x) for x in options.bands_bps],
        ofi_levels=options.ofi_levels,
        ofi_weights=[math.exp(-options.ofi_decay_alpha * m) for m in range(options.ofi_levels)],
        horizons_ms=[max(1, _ms(h)) for h in options.horizons],
        bar_ms=[int(d) * 1000 for d in options.bar_durations],
        emit_ms=_ms(options.hf_emit_interval),
        tight_thr=options.tight_spread_threshold,
        wide_thr=options.wide_spread_threshold,
        dynamic_regime=options.use_dynamic_spread_regime,
        regime_ms=max(1, _ms(options.spread_regime_window)),
        tight_pct=options.spread_tight_percentile,
        wide_pct=options.spread_wide_percentile,
        kyle_ms=max(1, _ms(options.kyle_lambda_window)),
        enable_vpin=options.enable_vpin,
        vpin_bucket=options.vpin_bucket_volume,
        vpin_buckets=options.vpin_window_buckets,
        momentum_ms=max(1, _ms(options.momentum_window)),
    )


def rebuild_args(options: FeatureOptions) -> dict:
    """Keyword arguments of fluxforge._kernels.book_rebuild.BookRebuild."""
    return dict(max_levels=options.max_levels, edges_bps=[float(x) for x in options.bands_bps],
                max_depth=options.book_max_depth, emit_ms=_ms(options.hf_emit_interval))


def time_features(ts_ms: np.ndarray) -> dict[str, np.ndarray]:
    """UTC calendar features of exchange timestamps (Monday = 0)."""
    days = ts_ms // 86_400_000
    dow = ((days + 3) % 7).astype(np.int32)  # 1970-01-01 was a Thursday
    return {
        "hour_of_day": ((ts_ms // 3_600_000) % 24).astype(np.int32),
        "day_of_week": dow,
        "minute_of_hour": ((ts_ms // 60_000) % 60).astype(np.int32),
        "is_weekend": dow >= 5,
    }


TS_TYPE = pa.timestamp("ms", tz="UTC")


class HfBuilder:
    """The typed hf table from the kernel block (ncols x rows) and the emitted rows' inputs,
    for one set of options, with the names and column kinds worked out once.

    Why: the live path builds a table of a row or two per symbol and flush, so per-call
    schema work (160 names, a dict, one Arrow conversion per column) was most of its cost.
    The float columns are slices of one Arrow array over the whole block (one conversion);
    bool and int columns are converted from their float kernel values."""

    def __init__(self, options: FeatureOptions):
        self.keep_raw = options.keep_raw_arrays
        self.kernel = kernel_names(options)
        self.kinds = [2 if n in BOOL_COLUMNS else 1 if n in INT_COLUMNS else 0 for n in self.kernel]
        self.names = ["timestamp", "nonce", *self.kernel, *TIME]
        self._key = ("hf", tuple(self.names))  # of its PendingTables: Arrow nonces, numpy nonces
        self._numpy_key = (*self._key, "numpy nonce")
        self._empty: pa.Table | None = None
        self._schema: pa.Schema | None = None  # of the plain tables (int64 nonce, no raw arrays)

    def table(self, ts: np.ndarray, nonce: pa.Array | np.ndarray, block: np.ndarray,
              raw: dict[str, pa.Array] | None = None, later: bool = False) -> pa.Table | PendingTable:
        """later: rows without raw arrays come back as a PendingTable (features/pending_tables.py).
        nonce: Arrow, or int64 numpy with book_arrays.NULL_NONCE where none (the engine's: made
        Arrow once for all symbols' rows when pending)."""
        n = len(ts)
        with_raw = self.keep_raw and raw is not None
        if isinstance(nonce, np.ndarray):
            if later and n and not with_raw and block.shape == (len(self.kernel), n):
                return PendingTable(self._numpy_key, self.table, (ts, nonce, block), (0, 0, 1), n)
            nonce = book_arrays.nullable_int64(nonce)
        plain = not with_raw and nonce.type == pa.int64()
        if n == 0 and plain and self._empty is not None:
            return self._empty  # tables are immutable: the empty one is shared
        if block.shape != (len(self.kernel), n):
            raise ValueError(f"kernel block has shape {block.shape}, layout names {len(self.kernel)} x {n}")
        if later and plain and n:  # builders with the same names build the same table
            return PendingTable(self._key, self.table, (ts, nonce, block), (0, None, 1), n)
        flat = pa.array(np.ascontiguousarray(block, dtype=np.float64).ravel())
        arrays = [pa.array(ts, type=pa.int64()).cast(TS_TYPE), nonce]
        for i, (kind, values) in enumerate(zip(self.kinds, block)):
            if kind == 0:
                arrays.append(flat.slice(i * n, n))
            elif kind == 2:
                arrays.append(pa.array(values != 0.0))
            else:
                arrays.append(pa.array(values.astype(np.int32)))
        arrays += [pa.array(values) for values in time_features(ts).values()]
        if plain and self._schema is not None:  # a known schema: no 160 fields inferred per call
            return pa.Table.from_arrays(arrays, schema=self._schema)
        names = self.names
        if with_raw:
            names = [*names, *raw]
            arrays += list(raw.values())
        table = pa.Table.from_arrays(arrays, names=names)
        if plain:
            self._schema = table.schema
            if n == 0:
                self._empty = table
        return table


def typed_bars(fields: list[str], rows: np.ndarray, duration: np.ndarray, int_fields: set[str],
               time_fields: frozenset[str] = frozenset({"timestamp"}), later: bool = False) -> pa.Table | PendingTable:
    """Arrow table from a bar kernel's (bars x fields) float64 block, for every bar product.

    `time_fields` become UTC ms timestamps, `int_fields` int64, `is_empty` bool, the
    rest float64; `duration` is inserted after `timestamp`.  One builder, so book
    bars and trade/volume/dollar bars can never type the same field differently.
    later: a non-empty table comes back as a PendingTable (features/pending_tables.py).
    """
    if rows.ndim != 2 or rows.shape[1] != len(fields):
        raise ValueError(f"kernel block has shape {rows.shape}, layout names {len(fields)} fields")
    if later and len(rows):
        key = ("bars", tuple(fields), duration.dtype.str, frozenset(int_fields), time_fields)
        return PendingTable(key, partial(typed_bars, fields, int_fields=int_fields, time_fields=time_fields),
                            (rows, duration), (0, 0), len(rows))
    key = None
    if not len(rows):  # most calls of the live path close no bar: the empty table is built once
        key = (tuple(fields), duration.dtype.str, frozenset(int_fields), time_fields)
        cached = _EMPTY_BARS.get(key)
        if cached is not None:
            return cached
    out: dict[str, pa.Array] = {}
    for name, values in zip(fields, rows.T):
        if name in time_fields:
            out[name] = pa.array(values.astype(np.int64), type=pa.int64()).cast(TS_TYPE)
            if name == "timestamp":
                out["duration"] = pa.array(duration)
        elif name in int_fields:
            out[name] = pa.array(values.astype(np.int64))
        elif name == "is_empty":
            out[name] = pa.array(values != 0.0)
        else:
            out[name] = pa.array(values)
    table = pa.table(out)
    if key is not None:
        _EMPTY_BARS[key] = table
    return table


_EMPTY_BARS: dict[tuple, pa.Table] = {}  # typed_bars' empty tables (immutable, shared)


def bar_table(duration_s: int, rows: np.ndarray, later: bool = False) -> pa.Table | PendingTable:
    """Typed bars table from the kernel's (bars x 20) float64 block; `duration` int32 seconds."""
    return typed_bars(BAR_FIELDS, rows, np.full(len(rows), duration_s, dtype=np.int32), BAR_INT, later=later)
