"""What this ETL serves live: its products and (exchange, symbol) streams, to refuse a request for others.

Why: a subscription to a product the ETL does not make (`bar`, `bars/interval=7s` when the
bars are 1/5/60 s) or a symbol this host does not collect (a fleet shards symbols across
hosts) would otherwise be accepted and then stay silent forever -- a typo that narrows the
subscription to nothing, which protocol.py promises never to do.  The products follow from
the config exactly as the ETL names its outputs (etl/segment_feed.py `products`): hf, the
book bars of `etl.features.bar_durations`, and per `etl.trades` (with each
`etl.symbol_overrides` entry) the trade bars, volume and dollar bars, per-trade rows and the
ticker features.  The streams are the config's exchanges and symbols; the hub also accepts
any stream it holds rows of (a symbol since removed from the config, still in the replay
ring).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..config import Config, TradeOptions
from ..features import ticker_layout, trade_layout
from .protocol import Request, RequestError, symbol_key

Stream = tuple[str, str]  # (exchange, ccxt symbol)


@dataclass(frozen=True)
class Catalog:
    products: frozenset[str]
    streams: frozenset[Stream]

    @classmethod
    def from_config(cls, cfg: Config) -> "Catalog":
        products = {"hf", *(f"bars/interval={int(d)}s" for d in cfg.etl.features.bar_durations)}
        trades = [cfg.etl.trades] + [TradeOptions(**{**cfg.etl.trades.model_dump(), **extra})
                                     for extra in cfg.etl.symbol_overrides.values()]
        for opts in trades:
            products |= _trade_products(opts)
        streams = {(e.name, s) for e in cfg.exchanges for s in e.symbols}
        return cls(frozenset(products), frozenset(streams))

    def check(self, request: Request, held: Iterable[tuple[str, str]] = ()) -> None:
        """Raise RequestError naming what `request` asks for that is neither served nor held (the
        (exchange, symbol) streams of rows the hub holds)."""
        if request.products is not None:
            unknown = [p for p in request.products
                       if not any(q == p or q.startswith(p + "/") for q in self.products)]
            if unknown:
                raise RequestError(f"products: {', '.join(map(repr, unknown))} not made by this ETL; "
                                   f"it makes {', '.join(sorted(self.products))}")
        streams = self.streams | set(held)
        if request.exchanges is not None:
            unknown = sorted(request.exchanges - {e for e, _ in streams})
            if unknown:
                raise RequestError(f"exchanges: {', '.join(map(repr, unknown))} not collected here; "
                                   f"this host has {', '.join(sorted({e for e, _ in streams}))}")
        if request.symbols is not None:
            exchanges = request.exchanges or {e for e, _ in streams}
            here = {symbol_key(s): s for e, s in streams if e in exchanges}
            unknown = sorted(request.symbols - set(here))
            if unknown:
                have = ", ".join(sorted(set(here.values())))
                raise RequestError(f"symbols: {', '.join(map(repr, unknown))} not collected here "
                                   f"(on {', '.join(sorted(exchanges))}); this host has {have}")


def _trade_products(opts: TradeOptions) -> set[str]:
    """The trade products one symbol's options make (etl/trade_products.py TradeProducts)."""
    out = {f"{trade_layout.TRADE_BARS}/interval={int(d)}s" for d in opts.bar_durations}
    out.add(ticker_layout.TICKER)
    if opts.volume_bar_size > 0:
        out.add(trade_layout.VOLUME_BARS)
    if opts.dollar_bar_size > 0:
        out.add(trade_layout.DOLLAR_BARS)
    if opts.per_trade:
        out.add(trade_layout.TRADES)
    return out
