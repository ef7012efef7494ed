"""The exchange's book by its documented rule, rebuilt from bronze rows: strict, per exchange.

Its job is to be the oracle of what bronze means: any row that breaks the
exchange's rule raises, so a test that rebuilds bronze with it proves that the
recording lost nothing.  (tests/reference/book_rebuild.py has a different job:
it spells out the ETL kernel's tolerant rules -- gaps, stale rows, mismatches,
eviction -- for the kernel's differential tests.)

Written from the exchanges' documented rules, sharing no code with fluxforge:
* a `snapshot` row sets the book to exactly its levels (no trimming, ever);
* a `delta` row sets each listed level's size (0 = delete), in row order;
* Binance spot (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams,
  "How to manage a local order book correctly"): the first diff after a snapshot
  with lastUpdateId L must have U <= L+1 <= u, every later one U == previous u + 1
  (bronze: prev_nonce = U - 1, nonce = u);
* OKX (https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel):
  each update's prevSeqId equals the previous message's seqId, and `checksum` is the
  signed CRC32 of "bid1px:bid1sz:ask1px:ask1sz:..." over the top 25 levels of the
  book after the message, decimals written as OKX writes them (no trailing zeros).
A violation raises `RebuildError` naming the row.
"""
from __future__ import annotations

import zlib
from decimal import Decimal


class RebuildError(AssertionError):
    pass


def okx_decimal(x: float) -> str:
    """The decimal string OKX sends for a value that ccxt parsed into `x`."""
    s = format(Decimal(repr(x)), "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def okx_checksum(bids: dict, asks: dict) -> int:
    top_b = sorted(bids, reverse=True)[:25]
    top_a = sorted(asks)[:25]
    parts = []
    for i in range(max(len(top_b), len(top_a))):
        if i < len(top_b):
            parts += [okx_decimal(top_b[i]), okx_decimal(bids[top_b[i]])]
        if i < len(top_a):
            parts += [okx_decimal(top_a[i]), okx_decimal(asks[top_a[i]])]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class BookRebuild:
    """One (exchange, symbol) book rebuilt from its bronze rows in order."""

    def __init__(self, exchange: str):
        if exchange not in ("binance", "okx"):
            raise ValueError(f"no documented rule for {exchange!r} here")
        self.exchange = exchange
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.nonce: int | None = None
        self.synced_since_snapshot = False
        self.checksums_verified = 0
        self.live = LiveFingerprint({}, {})

    def apply(self, row: dict) -> None:
        where = f"{self.exchange} {row['symbol']} {row['kind']} row nonce={row['nonce']}"
        if row["kind"] == "snapshot":
            self.bids = dict(zip(row["bid_px"], row["bid_sz"]))
            self.asks = dict(zip(row["ask_px"], row["ask_sz"]))
            if len(self.bids) != len(row["bid_px"]) or len(self.asks) != len(row["ask_px"]):
                raise RebuildError(f"{where}: a snapshot lists a price twice")
            if 0.0 in self.bids.values() or 0.0 in self.asks.values():
                raise RebuildError(f"{where}: a snapshot holds an empty level")
            self.synced_since_snapshot = False
            self.live = LiveFingerprint(self.bids, self.asks)
        elif row["kind"] == "delta":
            self._check_link(row, where)
            for side, book, px, sz in ((0, self.bids, row["bid_px"], row["bid_sz"]),
                                       (1, self.asks, row["ask_px"], row["ask_sz"])):
                for p, q in zip(px, sz):
                    if q == 0.0:
                        book.pop(p, None)
                    else:
                        book[p] = q
                    self.live.set(side, p, q)
            self.synced_since_snapshot = True
        else:
            raise RebuildError(f"{where}: unknown kind")
        self.nonce = row["nonce"]
        if self.exchange == "okx":
            if row["checksum"] is None:
                raise RebuildError(f"{where}: OKX sends a checksum with every message")
            got = okx_checksum(self.bids, self.asks)
            if got != row["checksum"]:
                raise RebuildError(f"{where}: checksum {got} != {row['checksum']}")
            self.checksums_verified += 1

    def _check_link(self, row: dict, where: str) -> None:
        if self.nonce is None:
            raise RebuildError(f"{where}: a delta before any snapshot")
        prev, u = row["prev_nonce"], row["nonce"]
        if self.exchange == "binance" and not self.synced_since_snapshot:
            ok = prev <= self.nonce and u >= self.nonce + 1      # U <= L+1 <= u
        else:
            ok = prev == self.nonce                               # U == u'+1 / prevSeqId == seqId'
        if not ok:
            raise RebuildError(f"{where}: prev_nonce {prev} does not continue {self.nonce}")

    def fingerprint(self) -> int:
        """An order-independent hash of the whole book (both sides, every level), kept per level."""
        return self.live.value


_MASK = (1 << 64) - 1


def level_hash(side: int, price: float, size: float) -> int:
    return hash((side, price, size)) & _MASK


def book_fingerprint(bids: dict, asks: dict) -> int:
    """Sum of the level hashes: a book's fingerprint that can also be kept up to date level by level."""
    total = sum(level_hash(0, p, q) for p, q in bids.items()) + sum(level_hash(1, p, q) for p, q in asks.items())
    return total & _MASK


class LiveFingerprint:
    """A float book (bids, asks) with its `book_fingerprint` kept up to date per level set."""

    def __init__(self, bids: dict, asks: dict):
        self.sides = (dict(bids), dict(asks))
        self.value = book_fingerprint(*self.sides)

    def set(self, side: int, price: float, size: float) -> None:
        book = self.sides[side]
        old = book.get(price)
        if old is not None:
            self.value = (self.value - level_hash(side, price, old)) & _MASK
        if size == 0.0:
            book.pop(price, None)
        else:
            book[price] = size
            self.value = (self.value + level_hash(side, price, size)) & _MASK
