"""Where feature files go: the Hive partition layout of features/ (TEAM.md contract).

    hf/exchange=<ex>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/part-<segment id>.parquet
    bars/interval=<d>s/exchange=<ex>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/part-<segment id>.parquet
    trade_bars/interval=<d>s/exchange=<ex>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/part-<segment id>.parquet
    volume_bars/, dollar_bars/ and ticker/exchange=<ex>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/part-<segment id>.parquet

Why names derive from the segment id: redoing a segment after a crash rewrites
the same files, so outputs can never be duplicated (DESIGN decision 5).

Why a codec pair: two symbols must never share a partition (`币安人生/USDT` and
`客服小何/USDT` once both became `symbol=-----USDT`, and every segment failed).
`symbol_path_value` is one-to-one and `symbol_from_path_value` inverts it; every
reader (report, compaction, sync, the demo) goes through these two.  An ASCII
ccxt symbol keeps its readable form (`BTC/USDT:USDT` -> `BTC-USDT-USDT`: base,
quote and settle contain no '-', so the first two '-' are the '/' and ':');
anything else is percent-encoded byte by byte over UTF-8 with '-' encoded too
(`币安人生/USDT` -> `%E5%B8%81...%2FUSDT`).  A readable value always holds a '-'
and never a '%', a percent-encoded one never a '-', so the two forms never meet.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

MS_PER_DAY = 86_400_000
_WORD = r"[A-Za-z0-9._]+"
_READABLE_SYMBOL = re.compile(rf"^{_WORD}/{_WORD}(?::{_WORD}(?:-[A-Za-z0-9._-]+)?)?$")
_SYMBOL_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._")
_EXCHANGE_SAFE = _SYMBOL_SAFE | {ord("-")}


def _percent(text: str, safe: frozenset[int]) -> str:
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in text.encode("utf-8"))


def _unpercent(value: str, safe: frozenset[int]) -> str:
    out = bytearray()
    i = 0
    while i < len(value):
        c = value[i]
        if c == "%" and re.fullmatch(r"[0-9A-F]{2}", value[i + 1:i + 3]):
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        elif ord(c) < 128 and ord(c) in safe:
            out.append(ord(c))
            i += 1
        else:
            raise ValueError(f"not a partition value: {value!r}")
    text = out.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if _percent(text, safe) != value:
        raise ValueError(f"not a canonical partition value: {value!r}")
    return text


def _readable_symbol(value: str) -> str:
    parts = value.split("-")
    symbol = f"{parts[0]}/{parts[1]}"
    if len(parts) > 2:
        symbol += f":{parts[2]}" + "".join(f"-{p}" for p in parts[3:])
    return symbol


def symbol_path_value(symbol: str) -> str:
    """ccxt unified symbol -> partition value (one-to-one): 'BTC/USDT' -> 'BTC-USDT',
    'BTC/USDT:USDT' -> 'BTC-USDT-USDT', 'BTC/USD:BTC-250328' -> 'BTC-USD-BTC-250328',
    anything else percent-encoded."""
    if _READABLE_SYMBOL.match(symbol):
        value = symbol.replace("/", "-", 1).replace(":", "-", 1)
        if _readable_symbol(value) == symbol:
            return value
    return _percent(symbol, _SYMBOL_SAFE)


def symbol_from_path_value(value: str) -> str:
    """Partition value -> ccxt symbol, the inverse of `symbol_path_value`; ValueError if not one."""
    if "-" in value and "%" not in value:
        symbol = _readable_symbol(value)
    else:
        symbol = _unpercent(value, _SYMBOL_SAFE)
    if symbol_path_value(symbol) != value:
        raise ValueError(f"not a symbol partition value: {value!r}")
    return symbol


def exchange_path_value(exchange: str) -> str:
    """Exchange name -> partition value (one-to-one: ccxt ids stay as they are)."""
    return _percent(exchange, _EXCHANGE_SAFE)


def exchange_from_path_value(value: str) -> str:
    return _unpercent(value, _EXCHANGE_SAFE)


def date_of_day(day: int) -> str:
    """Day number since the epoch (ms // MS_PER_DAY) -> 'YYYY-MM-DD' (UTC)."""
    return datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%d")


def part_name(segment: str, last: str | None = None) -> str:
    """A segment's part file; with `last`, the file compaction merges `segment`..`last` into."""
    return f"part-{segment}.parquet" if last is None else f"part-{segment}--{last}.parquet"


def part_segments(path: Path) -> list[str]:
    """The inverse of `part_name`: the segment ids a part file names -- [segment], or [first, last]
    for a file compaction merged (`part-<first>--<last>.parquet`); a ValueError for a foreign file."""
    from ..bronze.segments import SegmentId  # (bronze -> config -> naming: not at import time)
    name = path.name
    if not (name.startswith("part-") and name.endswith(".parquet")):
        raise ValueError(f"not a part file name: {name!r}")
    names = name[len("part-"):-len(".parquet")].split("--")
    if len(names) > 2:
        raise ValueError(f"not a part file name: {name!r}")
    for n in names:
        SegmentId.parse(n)  # raises ValueError for foreign files
    return names


def product_tree(tree: str, interval_s: int = 0) -> str:
    """A product's path under features/, which is also its name on the live wire: `hf`,
    `bars/interval=60s`, `trade_bars/interval=5s`; interval_s 0: a tree without intervals
    (volume_bars, dollar_bars, trades, ticker)."""
    return f"{tree}/interval={int(interval_s)}s" if interval_s else tree


def hf_partition(root: Path, exchange: str, symbol: str, day: int) -> Path:
    return (root / "hf" / f"exchange={exchange_path_value(exchange)}"
            / f"symbol={symbol_path_value(symbol)}" / f"date={date_of_day(day)}")


def bars_partition(root: Path, interval_s: int, exchange: str, symbol: str, day: int) -> Path:
    return (root / product_tree("bars", interval_s) / f"exchange={exchange_path_value(exchange)}"
            / f"symbol={symbol_path_value(symbol)}" / f"date={date_of_day(day)}")


def trade_partition(root: Path, tree: str, interval_s: int, exchange: str, symbol: str, day: int) -> Path:
    """A trade-product tree's partition (features/trade_layout.py declares the trees);
    interval_s 0: a tree without intervals (volume_bars/, dollar_bars/, ticker/)."""
    return (root / product_tree(tree, interval_s) / f"exchange={exchange_path_value(exchange)}"
            / f"symbol={symbol_path_value(symbol)}" / f"date={date_of_day(day)}")
