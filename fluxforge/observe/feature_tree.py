"""Find and read bars, trade bars, hf and ticker rows in the Hive feature tree
(features/{bars/interval=<d>s,trade_bars/interval=<d>s,hf,ticker,...}/exchange=/symbol=/date=).

Why a reader next to the ETL's writer: `fluxforge report` and the demo summary
must pick one exchange + symbol + interval + time range without scanning the
whole tree, ignore hidden temp files of a writer in progress, and tell the user
what *is* there when their choice matches nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..etl.naming import exchange_path_value, product_tree, symbol_from_path_value, symbol_path_value
from ..features.trade_layout import TRADE_BARS

_INTERVAL = re.compile(r"^interval=(\d+)s$")


class NoBars(Exception):
    """Nothing matches; the message says what exists instead."""


class UnreadableFeatureFile(Exception):
    """A file the read needs is not readable Parquet (a damaged card); the message names it."""


def _read(path: Path, columns: list[str] | None = None, schema_only: bool = False):
    try:
        return pq.read_schema(path) if schema_only else pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise UnreadableFeatureFile(f"{path}: cannot be read ({e}); move it away, or recompute it with "
                                    "`fluxforge replay` (docs/operations.md)") from None


@dataclass(frozen=True)
class BarSeries:
    """Bars of one exchange + symbol + interval, sorted by time (and the hf rows of the same range)."""

    exchange: str
    symbol: str          # partition value, e.g. BTC-USDT
    interval_s: int
    table: pa.Table      # includes `timestamp` (timestamp[ms, UTC])
    hf: pa.Table | None = None  # features the bars do not carry (microprice, VPIN) come from here
    trades: pa.Table | None = None  # trade bars (OHLCV of trades) of the same range, if the ETL wrote any
    trades_interval_s: int | None = None
    ticker: pa.Table | None = None  # ticker features of the same range, read when there are no bars

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def describe(self) -> str:
        """What was read: '300 bars of 60s, 1,200 trade bars of 5s, 900 ticker rows' (the parts present)."""
        parts = [f"{self.rows:,} bars of {self.interval_s}s"] if self.rows else []
        if self.trades is not None:
            parts.append(f"{self.trades.num_rows:,} trade bars of {self.trades_interval_s}s")
        if self.ticker is not None:
            parts.append(f"{self.ticker.num_rows:,} ticker rows")
        return ", ".join(parts) or "no rows"


def _values(directory: Path, key: str) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in directory.iterdir()
                  if p.is_dir() and p.name.startswith(f"{key}="))


def intervals(features_dir: Path, tree: str = "bars") -> list[int]:
    bars = Path(features_dir) / tree
    if not bars.is_dir():
        return []
    return sorted(int(m[1]) for p in bars.iterdir() if (m := _INTERVAL.match(p.name)))


def _partition_roots(features_dir: Path) -> list[Path]:
    """Every directory holding exchange= partitions: each tree (hf, trades, ticker, ...) or each of its
    interval=<d>s (bars, trade_bars); hidden and `_` entries (a backfill's markers) are not trees."""
    features_dir = Path(features_dir)
    trees = sorted(p for p in features_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))) \
        if features_dir.is_dir() else []
    roots = []
    for tree in trees:
        by_interval = sorted(p for p in tree.iterdir() if p.is_dir() and _INTERVAL.match(p.name))
        roots += by_interval or [tree]
    return roots


def symbols(features_dir: Path) -> dict[str, list[str]]:
    """exchange -> partition symbols that have features of any tree (bars, trade bars, trades, ticker, hf, ...)."""
    out: dict[str, set[str]] = {}
    for root in _partition_roots(features_dir):
        for ex in _values(root, "exchange"):
            out.setdefault(ex, set()).update(_values(root / f"exchange={ex}", "symbol"))
    return {ex: sorted(s) for ex, s in sorted(out.items())}


def resolve_symbol(features_dir: Path, symbol: str, exchange: str | None) -> tuple[str, str]:
    """(exchange, partition symbol) for a user's 'BTC/USDT' or 'BTC-USDT'; NoBars if absent or ambiguous."""
    available = symbols(features_dir)
    if not available:
        raise NoBars(f"no features under {Path(features_dir)} (has the ETL run?)")
    wanted = next((w for w in _partition_candidates(symbol) if any(w in syms for syms in available.values())),
                  symbol_path_value(symbol))
    matches = [ex for ex, syms in available.items() if wanted in syms
               and (exchange is None or ex == exchange_path_value(exchange))]
    listing = "; ".join(f"{ex}: {', '.join(s)}" for ex, s in available.items())
    if not matches:
        raise NoBars(f"no features for {symbol}{' on ' + exchange if exchange else ''}; available: {listing}")
    if len(matches) > 1:
        raise NoBars(f"{symbol} is on several exchanges ({', '.join(matches)}): choose one with --exchange")
    return matches[0], wanted


def _partition_candidates(symbol: str) -> list[str]:
    """Partition values a user's symbol may mean: the ccxt symbol encoded, or a partition value as typed."""
    out = []
    for s in dict.fromkeys((symbol, symbol.upper())):
        out.append(symbol_path_value(s))
        try:
            symbol_from_path_value(s)
            out.append(s)
        except ValueError:
            pass
    return list(dict.fromkeys(out))


def _symbol_dir(features_dir: Path, interval_s: int | None, exchange: str, symbol: str, tree: str = "bars") -> Path:
    """<tree>/interval=<d>s/exchange=/symbol= for bars (tree: bars, trade_bars); when interval_s is None,
    hf/exchange=/symbol= (tree bars) or <tree>/exchange=/symbol= (tree: ticker, trades, ...)."""
    flat = "hf" if tree == "bars" else tree
    kind = Path(features_dir) / (flat if interval_s is None else product_tree(tree, interval_s))
    return kind / f"exchange={exchange}" / f"symbol={symbol}"


def _dates(features_dir: Path, interval_s: int | None, exchange: str, symbol: str, tree: str = "bars") -> list[str]:
    return _values(_symbol_dir(features_dir, interval_s, exchange, symbol, tree), "date")


def hf_columns(features_dir: Path, exchange: str, symbol: str) -> list[str]:
    """Column names of the symbol's newest hf file (all hf files of a config share them), or []."""
    for date in reversed(_dates(features_dir, None, exchange, symbol)):
        files = sorted(p for p in (_symbol_dir(features_dir, None, exchange, symbol) / f"date={date}").glob("*.parquet")
                       if not p.name.startswith("."))
        if files:
            return _read(files[-1], schema_only=True).names
    return []


def newest_date(features_dir: Path, exchange: str, symbol: str) -> str | None:
    """The newest date partition of the symbol in any tree."""
    dirs = [root / f"exchange={exchange}" / f"symbol={symbol}" for root in _partition_roots(features_dir)]
    return max((d for p in dirs for d in _values(p, "date")), default=None)


def has_rows(features_dir: Path, exchange: str, symbol: str, tree: str) -> bool:
    """Whether a tree without intervals (ticker, trades, hf) has a date partition of the symbol."""
    return bool(_dates(features_dir, None, exchange, symbol, tree))


def read_rows(features_dir: Path, interval_s: int | None, exchange: str, symbol: str,
              start: datetime | None = None, end: datetime | None = None,
              columns: list[str] | None = None, tree: str = "bars") -> pa.Table:
    """Rows in [start, end) (None = open) of bars (interval_s; of `tree`) or hf rows (None), sorted by time.

    Only the date partitions that can overlap the range are opened.
    """
    tables = []
    for date in _dates(features_dir, interval_s, exchange, symbol, tree):
        day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        if (start and day.date() < start.date()) or (end and day >= end):
            continue
        part_dir = _symbol_dir(features_dir, interval_s, exchange, symbol, tree) / f"date={date}"
        for f in sorted(part_dir.glob("*.parquet")):
            if not f.name.startswith("."):
                tables.append(_read(f, columns))
    if not tables:
        return no_rows()
    table = pa.concat_tables(tables, promote_options="permissive")
    ts = table.column("timestamp")
    if start is not None:
        table = table.filter(pc.greater_equal(ts, pa.scalar(start, ts.type)))
        ts = table.column("timestamp")
    if end is not None:
        table = table.filter(pc.less(ts, pa.scalar(end, ts.type)))
    return table.take(pc.sort_indices(table, sort_keys=[("timestamp", "ascending")]))


def no_rows() -> pa.Table:
    """What a read of nothing gives: a `timestamp` column and no rows."""
    return pa.table({"timestamp": pa.array([], pa.timestamp("ms", tz="UTC"))})


def read_bars(features_dir: Path, interval_s: int, exchange: str, symbol: str,
              start: datetime | None = None, end: datetime | None = None,
              columns: list[str] | None = None) -> BarSeries:
    return BarSeries(exchange, symbol, interval_s,
                     read_rows(features_dir, interval_s, exchange, symbol, start, end, columns))


def trade_bar_interval(features_dir: Path, exchange: str, symbol: str, interval_s: int) -> int | None:
    """The trade-bar interval to draw beside `interval_s` book bars: the same, else the coarsest finer
    one, else the finest; None when the symbol has no trade bars."""
    found = [iv for iv in intervals(features_dir, TRADE_BARS)
             if _dates(features_dir, iv, exchange, symbol, TRADE_BARS)]
    if not found:
        return None
    finer = [iv for iv in found if iv <= interval_s]
    return max(finer) if finer else min(found)


def read_trade_bars(series: BarSeries, features_dir: Path, start: datetime | None = None,
                    end: datetime | None = None) -> BarSeries:
    """`series` with the symbol's trade bars of the same range (features/trade_bars/), if any."""
    iv = trade_bar_interval(features_dir, series.exchange, series.symbol, series.interval_s)
    if iv is None:
        return series
    table = read_rows(features_dir, iv, series.exchange, series.symbol, start, end, tree=TRADE_BARS)
    return replace(series, trades=table if table.num_rows else None, trades_interval_s=iv if table.num_rows else None)


def pick_interval(features_dir: Path, exchange: str, symbol: str, start: datetime | None,
                  end: datetime | None, min_bars: int = 100) -> int | None:
    """The coarsest interval giving at least `min_bars` bars in the range, else the finest; of the book bars,
    else (a symbol with trades only) of the trade bars; None when the symbol has neither (e.g. tickers only)."""
    for tree in ("bars", TRADE_BARS):
        found = [iv for iv in intervals(features_dir, tree) if _dates(features_dir, iv, exchange, symbol, tree)]
        for iv in sorted(found, reverse=True):
            rows = read_rows(features_dir, iv, exchange, symbol, start, end, ["timestamp"], tree).num_rows
            if rows >= min_bars:
                return iv
        if found:
            return found[0]
    return None
