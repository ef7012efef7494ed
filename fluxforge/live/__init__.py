"""Live features: the ETL's rows served to strategies as they become final (docs/live.md).

`hub` (what the ETL publishes to), `endpoint` (Unix socket + optional WebSocket),
`subscriber` (bounded per-subscriber queues), `ring` (recent rows for replay),
`wire` (JSON lines / Arrow frames), `protocol` (the subscription request),
`settings` (`etl.live`), `client` (`subscribe()`).

Names are resolved lazily so `fluxforge.config` can import `live.settings`
without pulling in the hub.
"""
from __future__ import annotations

__all__ = ["subscribe", "LiveBatch", "LiveBusy", "LiveClosed", "LiveDropped", "LiveError", "LiveHub"]


def __getattr__(name: str):
    if name == "LiveHub":
        from .hub import LiveHub

        return LiveHub
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(name)
