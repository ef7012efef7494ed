"""What the loopback exchange's book WAS at every update, and the check that bronze rebuilds it.

`BookTruth` hooks the loopback hub (`Hub.book_observers`) and, after every book
update it applies, records a fingerprint of the authoritative book at full depth,
keyed by update id: the whole book for Binance (diffs + REST depth), the hub's
400-level window for OKX (its `books` channel is a 400-level book).  The
fingerprint (tests/reference/exchange_book.py) is a sum of per-level hashes kept
up to date level by level, so recording costs O(levels changed); `verify()`
checks the mirrored books against the loopback's own at full depth.
`assert_bronze_rebuilds` replays a stream's bronze rows through the independent
`BookRebuild` and requires the rebuilt book to equal the exchange's at EVERY row
(snapshot or delta), whole book, every level.
"""
from __future__ import annotations

from tests.reference.exchange_book import BookRebuild, LiveFingerprint

OKX_DEPTH = 400


def _floats(side: dict) -> dict:
    return {k: float(lv[1]) for k, lv in side.items()}


class BookTruth:
    def __init__(self, lx, protocols=("binance", "okx")):
        self.hub = lx.hub
        self.protocols = protocols
        self.prints: dict[tuple[str, str], dict[int, int]] = {}
        self.mirrors: dict[tuple[str, str], LiveFingerprint] = {}
        for symbol, book in lx.hub.books.items():  # the state before any update we observe
            self.mirrors[("binance", symbol)] = LiveFingerprint(_floats(book.bids), _floats(book.asks))
            self._record("binance", symbol, book.last_update_id)
            if "okx" in protocols:  # what an OKX subscription creates; from now on it follows every update
                window = lx.hub.window(symbol, OKX_DEPTH)
                self.mirrors[("okx", symbol)] = LiveFingerprint(_floats(window.bids), _floats(window.asks))
                self._record("okx", symbol, book.last_update_id)
        lx.hub.book_observers.append(self._observe)

    def _record(self, protocol: str, symbol: str, last_id: int) -> None:
        self.prints.setdefault((protocol, symbol), {})[last_id] = self.mirrors[(protocol, symbol)].value

    def _observe(self, update, book) -> None:
        symbol = update.symbol
        mirror = self.mirrors[("binance", symbol)]
        for side, levels in ((0, update.bids), (1, update.asks)):
            for p, q in levels:
                mirror.set(side, float(p), float(q))
        self._record("binance", symbol, book.last_update_id)
        okx = self.mirrors.get(("okx", symbol))
        if okx is None:
            return
        window = self.hub.windows[symbol]
        for side, levels in ((0, window.diff[0]), (1, window.diff[1])):
            for p, q in levels:
                okx.set(side, float(p), float(q))
        self._record("okx", symbol, book.last_update_id)

    def verify(self) -> None:
        """The mirrors equal the loopback's books (Binance: all levels; OKX: its top-400 window)."""
        for (protocol, symbol), mirror in self.mirrors.items():
            if protocol == "binance":
                book = self.hub.books[symbol]
                bids, asks = _floats(book.bids), _floats(book.asks)
            else:
                window = self.hub.windows[symbol]
                bids, asks = _floats(window.bids), _floats(window.asks)
                full = self.hub.books[symbol]
                assert sorted(bids) == sorted(full.bids, reverse=True)[:OKX_DEPTH][::-1]
                assert sorted(asks) == sorted(full.asks)[:OKX_DEPTH]
            assert mirror.sides == (bids, asks), (protocol, symbol)


def assert_bronze_rebuilds(rows: list[dict], truth: BookTruth, exchange: str, protocol: str, symbol: str,
                           check=None) -> int:
    """Rebuild `rows` (one stream's bronze book rows, in order); equal to the exchange's book at every row.

    `check(rebuild)`, if given, also runs after every row.  Returns the number of rows compared."""
    protocol = "binance" if protocol == "binanceus" else protocol  # Binance's protocol at its own URLs
    prints = truth.prints[(protocol, symbol)]
    rebuild = BookRebuild(protocol)
    assert rows and rows[0]["kind"] == "snapshot", f"{exchange} {symbol}: bronze must start with a snapshot"
    for i, row in enumerate(rows):
        rebuild.apply(row)
        want = prints.get(row["nonce"])
        assert want is not None, f"{exchange} {symbol}: row {i} has nonce {row['nonce']} the exchange never had"
        assert rebuild.fingerprint() == want, (
            f"{exchange} {symbol}: rebuilt book differs from the exchange's at row {i} ({row['kind']}, "
            f"nonce {row['nonce']}; {len(rebuild.bids)} bids, {len(rebuild.asks)} asks rebuilt)")
        if check is not None:
            check(rebuild)
    if protocol == "okx":
        assert rebuild.checksums_verified == len(rows)
    return len(rows)
