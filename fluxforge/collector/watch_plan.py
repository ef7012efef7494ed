"""Which `watch_*` calls one exchange entry needs: channel x symbol group, decided once at start.

Why a module of its own: the entry's layout (per-channel symbol lists, `isolate_books`),
what the exchange lists and what ccxt can watch in one call meet here, in a pure function
the unit tests can check without a network, so the watchers only run what it says.

Rules: a symbol the exchange does not list is left out (and reported by the caller); a
channel whose grouped `watch_*_for_symbols` ccxt offers gets one watch for all its symbols,
except books under `isolate_books`, which get one watch per symbol so that one symbol's
failure (a refused subscribe, an error rejected on the group) cannot stop the others' books;
a channel without a grouped call gets one watch per symbol.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Container

from ..config_exchange import ExchangeConfig


@dataclass(frozen=True)
class Watch:
    """One watcher: a channel and the symbols one `watch_*` call covers."""

    channel: str
    symbols: tuple[str, ...]


@dataclass
class WatchPlan:
    watches: list[Watch] = field(default_factory=list)
    channel_symbols: dict[str, list[str]] = field(default_factory=dict)  # listed symbols per channel
    unknown: list[str] = field(default_factory=list)                    # configured, not listed by the exchange

    @property
    def symbols(self) -> list[str]:
        """Every listed symbol some channel watches, in configuration order."""
        return list(dict.fromkeys(s for listed in self.channel_symbols.values() for s in listed))


def plan_watches(xcfg: ExchangeConfig, listed: Container[str], grouped: Container[str]) -> WatchPlan:
    """The watches for `xcfg`, given the exchange's `listed` symbols and the channels ccxt can watch `grouped`."""
    plan = WatchPlan(unknown=[s for s in xcfg.symbols if s not in listed])
    for channel, symbols in xcfg.channel_symbols().items():
        ours = [s for s in symbols if s in listed]
        if not ours:
            continue
        plan.channel_symbols[channel] = ours
        if channel in grouped and not (channel == "orderbook" and xcfg.isolate_books):
            plan.watches.append(Watch(channel, tuple(ours)))
        else:
            plan.watches += [Watch(channel, (s,)) for s in ours]
    return plan
