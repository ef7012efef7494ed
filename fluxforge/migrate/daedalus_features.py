"""Daedalus feature options -> FluxForge `etl.features`.

Why its own module: Daedalus has two generations of the same options, the streaming
processor's `etl.channels.orderbook.processor_options` (with the `hf_sample_interval` alias of
`hf_emit_interval`) and the newer top-level `features:` (`depth_levels`, `rolling_windows`,
`vpin_bucket_size`, static thresholds in bps). Both land on the one `FeatureOptions`; where they
disagree `features:` wins (Daedalus's own docs deprecate processor_options in its favour) and
a warning names the loser. Unit changes are explicit, never guessed from the name alone:
Daedalus's spread percentiles are fractions (0.2), FluxForge's are percent (20); its static
thresholds are bps in `features:` and decimals here.
"""
from __future__ import annotations

from typing import Any, Callable

from .config_translation import Translation, mapping_at

MAX_LEVELS = 50  # FeatureOptions.max_levels' ceiling


class _NoEquivalent(Exception):
    """Raised by a converter: the value cannot be carried over; the message says what to do."""


def _same(v: Any) -> tuple[Any, str]:
    return v, ""


def _percent(v: Any) -> tuple[Any, str]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _NoEquivalent(f"{v!r} is not a number; set the percentile (0-100) by hand")
    if 0 <= v <= 1:
        return round(v * 100.0, 9), f"fraction {v} -> percent"
    return v, "above 1, so already percent"


def _bps(v: Any) -> tuple[Any, str]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _NoEquivalent(f"{v!r} is not a number")
    return v / 1e4, f"{v} bps -> decimal"


def _negate(v: Any) -> tuple[Any, str]:
    return (not v), "negated"


def _levels(v: Any) -> tuple[Any, str]:
    if isinstance(v, int) and not isinstance(v, bool) and v > MAX_LEVELS:
        return MAX_LEVELS, f"{v} capped at {MAX_LEVELS} (depth aggregates use the full book to the widest band)"
    return v, ""


def _increasing(v: Any) -> tuple[Any, str]:
    if isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        fixed = sorted(set(v))
        if fixed != v:
            return fixed, "sorted, duplicates removed"
    return v, ""


Rule = tuple[str, Callable[[Any], tuple[Any, str]]]

# etl.channels.orderbook.processor_options (Daedalus StateConfig / StatefulProcessorConfig names)
PROCESSOR_OPTIONS: dict[str, Rule] = {
    "max_levels": ("max_levels", _levels), "ofi_levels": ("ofi_levels", _same),
    "ofi_decay_alpha": ("ofi_decay_alpha", _same), "bands_bps": ("bands_bps", _increasing),
    "horizons": ("horizons", _increasing), "bar_durations": ("bar_durations", _increasing),
    "hf_emit_interval": ("hf_emit_interval", _same), "hf_sample_interval": ("hf_emit_interval", _same),
    "keep_raw_arrays": ("keep_raw_arrays", _same), "tight_spread_threshold": ("tight_spread_threshold", _same),
    "use_dynamic_spread_regime": ("use_dynamic_spread_regime", _same),
    "spread_regime_window": ("spread_regime_window", _same),
    "spread_tight_percentile": ("spread_tight_percentile", _percent),
    "spread_wide_percentile": ("spread_wide_percentile", _percent),
    "kyle_lambda_window": ("kyle_lambda_window", _same), "enable_vpin": ("enable_vpin", _same),
    "vpin_bucket_volume": ("vpin_bucket_volume", _same), "vpin_window_buckets": ("vpin_window_buckets", _same),
}

# top-level features: (Daedalus FeatureConfigOptions names)
FEATURES: dict[str, Rule] = {
    "depth_levels": ("max_levels", _levels), "ofi_levels": ("ofi_levels", _same),
    "bands_bps": ("bands_bps", _increasing), "rolling_windows": ("horizons", _increasing),
    "bar_durations": ("bar_durations", _increasing), "ofi_decay_alpha": ("ofi_decay_alpha", _same),
    "kyle_lambda_window": ("kyle_lambda_window", _same), "enable_vpin": ("enable_vpin", _same),
    "vpin_bucket_size": ("vpin_bucket_volume", _same), "vpin_window_buckets": ("vpin_window_buckets", _same),
    "use_dynamic_spread_regime": ("use_dynamic_spread_regime", _same),
    "spread_regime_window": ("spread_regime_window", _same),
    "spread_tight_percentile": ("spread_tight_percentile", _percent),
    "spread_wide_percentile": ("spread_wide_percentile", _percent),
    "spread_tight_threshold_bps": ("tight_spread_threshold", _bps),
    "spread_wide_threshold_bps": ("wide_spread_threshold", _bps),
    "drop_raw_book_arrays": ("keep_raw_arrays", _negate),
}

_ALL_FAMILIES = ("FluxForge computes every feature family (structural, dynamic, rolling, bars, Kyle, VPIN) "
                 "on every row; choose columns when you read them (docs/features.md)")
NO_EQUIVALENT = {
    "compute_features": _ALL_FAMILIES, "enable_stateful": _ALL_FAMILIES, "categories": _ALL_FAMILIES,
    "bar_interval_seconds": "Daedalus itself ignored it whenever bar_durations was set (its default always "
                            "is); FluxForge's time bars are etl.features.bar_durations",
    "vpin_bucket_count": "unused by Daedalus's VPIN; the window is etl.features.vpin_window_buckets",
    "max_state_staleness_seconds": "FluxForge restarts stateful features at the gap/resync/reconnect events the "
                                   "collector records (and at a bronze gap), not after an idle time",
}


def _collect(section: Any, where: str, rules: dict[str, Rule], tr: Translation,
             into: dict[str, tuple[Any, str, str]]) -> None:
    if section is None:
        return
    if not isinstance(section, dict):
        tr.warn(where, f"is a {type(section).__name__}, not a mapping: nothing translated from it")
        return
    for key, value in section.items():
        old_key = f"{where}.{key}"
        if key in NO_EQUIVALENT:
            tr.warn(old_key, NO_EQUIVALENT[key])
            continue
        if key not in rules:
            tr.warn(old_key, "not a Daedalus feature option FluxForge knows: not translated")
            continue
        new, convert = rules[key]
        try:
            converted, note = convert(value)
        except _NoEquivalent as e:
            tr.warn(old_key, str(e))
            continue
        earlier = into.get(new)
        if earlier is not None and earlier[0] != converted:
            tr.warn(earlier[1], f"superseded by {old_key} = {value!r} (Daedalus's features: section wins; "
                                f"its processor_options are deprecated)")
        elif earlier is not None:
            tr.record(earlier[1], f"etl.features.{new}", f"the same value as {old_key}")
        into[new] = (converted, old_key, note)


def translate_features(old: dict[str, Any], tr: Translation) -> None:
    """processor_options, then `features:` on top, into `etl.features`."""
    values: dict[str, tuple[Any, str, str]] = {}
    _collect(mapping_at(old, "etl", "channels", "orderbook").get("processor_options"),
             "etl.channels.orderbook.processor_options", PROCESSOR_OPTIONS, tr, values)
    _collect(old.get("features"), "features", FEATURES, tr, values)
    levels, max_levels = values.get("ofi_levels"), values.get("max_levels")
    if levels and isinstance(levels[0], int) and levels[0] > (max_levels[0] if max_levels else 10):
        if max_levels:  # Daedalus's MLOFI could only use the levels it extracted
            values["ofi_levels"] = (max_levels[0], levels[1], f"{levels[0]} capped at max_levels")
        elif levels[0] <= MAX_LEVELS:  # Daedalus's default max_levels was 20, FluxForge's is 10
            values["max_levels"] = (levels[0], levels[1], "max_levels raised to ofi_levels")
    for new, (value, old_key, note) in values.items():
        tr.set(f"etl.features.{new}", value, old_key, note)
