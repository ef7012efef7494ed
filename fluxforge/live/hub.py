"""In-process hub the ETL publishes live rows to (stand-in: the serving branch replaces it).

Why a stand-in: the ETL's live computation (etl/live_follow.py) is built against the
`LiveHub` contract -- publish(product, table, replay=...), start(), close() -- while
the subscription endpoint is built elsewhere.  This one only keeps what was published,
in memory and bounded, which is what the computation's tests observe.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import pyarrow as pa


@dataclass
class Published:
    product: str
    table: pa.Table
    replay: bool


class LiveHub:
    """Receives live rows from the ETL's asyncio loop thread."""

    def __init__(self, keep: int = 100_000):
        self.published: deque[Published] = deque(maxlen=keep)

    def publish(self, product: str, table: pa.Table, *, replay: bool = False) -> None:
        self.published.append(Published(product, table, replay))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
