"""What this ETL serves live: its products and (exchange, symbol) streams, to refuse a request for others.

Why: a subscription to a product the ETL does not make (`bar`, `bars/interval=7s` when the
bars are 1/5/60 s) or a symbol this host does not collect (a fleet shards symbols across
hosts) would otherwise be accepted and then stay silent forever -- a typo that narrows the
subscription to nothing, which protocol.py promises never to do.  The products follow from
the config, named as the ETL names its outputs (etl/naming.py `product_tree`): hf, the book
bars of `etl.features.bar_durations`, and what `etl.trades` (with each `etl.symbol_overrides`
entry) makes (etl/trade_products.py `product_trees`).  The streams are the config's exchanges and symbols; the hub also accepts
any stream it holds rows of (a symbol since removed from the config, still in the replay
ring).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..config import Config
from ..etl.naming import product_tree
from ..etl.trade_products import options_for, product_trees
from .protocol import Request, RequestError, symbol_key

Stream = tuple[str, str]  # (exchange, ccxt symbol)


@dataclass(frozen=True)
class Catalog:
    products: frozenset[str]
    streams: frozenset[Stream]

    @classmethod
    def from_config(cls, cfg: Config) -> "Catalog":
        products = {"hf", *(product_tree("bars", d) for d in cfg.etl.features.bar_durations)}
        overrides = cfg.etl.symbol_overrides  # "exchange:SYMBOL" -> options of that symbol
        trades = [cfg.etl.trades] + [options_for(cfg.etl.trades, overrides, tuple(k.split(":", 1))) for k in overrides]
        for opts in trades:
            products |= product_trees(opts)
        streams = {(e.name, s) for e in cfg.exchanges for s in e.symbols}
        return cls(frozenset(products), frozenset(streams))

    def serving(self, request: Request) -> list[str]:
        """The products of this ETL the request matches (the `subscribed` frame's `serves`: a
        reconnecting client learns from it how long a bar's time precedes its publication)."""
        return sorted(p for p in self.products if request.products is None
                      or any(p == q or p.startswith(q + "/") for q in request.products))

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
        served = {e for e, _ in streams}
        if request.exchanges is not None:
            unknown = sorted(request.exchanges - served)
            if unknown:
                raise RequestError(f"exchanges: {', '.join(map(repr, unknown))} not collected here; "
                                   f"this host has {', '.join(sorted(served))}")
        if request.symbols is not None:
            exchanges = request.exchanges or served
            here = {symbol_key(s): s for e, s in streams if e in exchanges}
            unknown = sorted(request.symbols - set(here))
            if unknown:
                have = ", ".join(sorted(set(here.values())))
                raise RequestError(f"symbols: {', '.join(map(repr, unknown))} not collected here "
                                   f"(on {', '.join(sorted(exchanges))}); this host has {have}")

