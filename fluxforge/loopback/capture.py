"""Reading `<receive ns> <json>` capture files (the format of shared/data/binance-spot/).

Why separate from the replay: anything that wants the real messages (the
replay source, reference checks of features on real books) reads them the same
way.  Files may be gzip or plain text.  Bad lines are reported, not fatal:
`iter_capture` yields them as `BadLine` so a caller can count and show them.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Quote assets tried longest-first to split a Binance market id such as BTCUSDT.
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "DAI")


@dataclass(slots=True)
class CaptureLine:
    path: str
    line_no: int
    recv_ns: int
    message: dict


@dataclass(slots=True)
class BadLine:
    path: str
    line_no: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_no}: {self.reason}"


def open_text(path: str | Path):
    path = Path(path)
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gzipped else path.open("r", encoding="utf-8")


def iter_capture(path: str | Path) -> Iterator[CaptureLine | BadLine]:
    """Every line of a capture, parsed; a truncated gzip tail ends the file with one BadLine."""
    name = str(path)
    line_no = 0
    try:
        with open_text(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                stamp, _, payload = line.partition(" ")
                try:
                    yield CaptureLine(name, line_no, int(stamp), json.loads(payload))
                except ValueError as e:
                    yield BadLine(name, line_no, f"not '<ns> <json>': {e}")
    except (EOFError, OSError, UnicodeDecodeError) as e:
        yield BadLine(name, line_no + 1, f"unreadable ({type(e).__name__}: {e})")


def unified_symbol(market_id: str) -> str:
    """'BTCUSDT' -> 'BTC/USDT' (by known quote assets); ValueError if no quote asset matches."""
    market_id = market_id.upper()
    for quote in QUOTE_ASSETS:
        if market_id.endswith(quote) and len(market_id) > len(quote):
            return f"{market_id[:-len(quote)]}/{quote}"
    raise ValueError(f"cannot split market id {market_id!r} into base/quote")
