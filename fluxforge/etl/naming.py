"""Where feature files go: the Hive partition layout of features/ (TEAM.md contract).

    hf/exchange=<ex>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/part-<segment id>.parquet
    bars/interval=<d>s/exchange=<ex>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/part-<segment id>.parquet
    trade_bars/interval=<d>s/exchange=<ex>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/part-<segment id>.parquet
    volume_bars/ and dollar_bars/exchange=<ex>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/part-<segment id>.parquet

Why names derive from the segment id: redoing a segment after a crash rewrites
the same files, so outputs can never be duplicated (DESIGN decision 5).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MS_PER_DAY = 86_400_000


def symbol_path_value(symbol: str) -> str:
    """ccxt unified symbol -> partition value: 'BTC/USDT' -> 'BTC-USDT',
    'BTC/USDT:USDT' -> 'BTC-USDT-USDT', 'BTC/USD:BTC-250328' -> 'BTC-USD-BTC-250328'."""
    return _UNSAFE.sub("-", symbol.replace("/", "-").replace(":", "-"))


def exchange_path_value(exchange: str) -> str:
    return _UNSAFE.sub("-", exchange)


def date_of_day(day: int) -> str:
    """Day number since the epoch (ms // MS_PER_DAY) -> 'YYYY-MM-DD' (UTC)."""
    return datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%d")


def part_name(segment: str) -> str:
    return f"part-{segment}.parquet"


def hf_partition(root: Path, exchange: str, symbol: str, day: int) -> Path:
    return (root / "hf" / f"exchange={exchange_path_value(exchange)}"
            / f"symbol={symbol_path_value(symbol)}" / f"date={date_of_day(day)}")


def bars_partition(root: Path, interval_s: int, exchange: str, symbol: str, day: int) -> Path:
    return (root / "bars" / f"interval={int(interval_s)}s" / f"exchange={exchange_path_value(exchange)}"
            / f"symbol={symbol_path_value(symbol)}" / f"date={date_of_day(day)}")


def trade_partition(root: Path, tree: str, interval_s: int, exchange: str, symbol: str, day: int) -> Path:
    """A trade-product tree's partition (features/trade_layout.py declares the trees);
    interval_s 0: a tree without intervals (volume_bars/, dollar_bars/)."""
    base = root / tree / f"interval={int(interval_s)}s" if interval_s else root / tree
    return (base / f"exchange={exchange_path_value(exchange)}"
            / f"symbol={symbol_path_value(symbol)}" / f"date={date_of_day(day)}")
