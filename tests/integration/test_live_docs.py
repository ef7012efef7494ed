"""The strategy skeleton of docs/live.md runs as written against a real hub.

The example is taken from the document itself (the python block under
"Python: `fluxforge.live.subscribe()`"), run as a subprocess that finds the socket
through its config file, fed replayed and live bars, and stopped by the hub closing.
"""
from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import yaml

from live_support import TS, running_hub, wait_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "live.md"


def example() -> str:
    text = DOC.read_text()
    section = text[text.index("## Python: `fluxforge.live.subscribe()`"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def bars(start_ms: int, closes: list[float]) -> pa.Table:
    n = len(closes)
    return pa.table({"exchange": ["binance"] * n, "symbol": ["BTC/USDT"] * n,
                     "timestamp": pa.array([start_ms + 5000 * i for i in range(n)], pa.int64()).cast(TS),
                     "close": pa.array(closes, pa.float64())})


def test_docs_strategy_skeleton_runs(tmp_path):
    code = example()
    assert 15 <= len(code.strip().splitlines()) <= 30
    script = tmp_path / "strategy.py"
    script.write_text(code)
    now = int(time.time() * 1000) // 5000 * 5000
    warmup = bars(now - 10 * 60_000, [100.0, 101.0, 102.0])        # replayed: no output
    live = bars(now, [103.0, math.nan, 90.0, 91.0])                 # NaN bar skipped

    async def scenario():
        async with running_hub() as hub:
            config = tmp_path / "config.yaml"
            config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"),
                                              "etl": {"live": {"socket": str(hub.socket_path)}}}))
            hub.publish("bars/interval=5s", warmup)
            hub.publish("bars/interval=60s", bars(now, [1.0]))       # another product: not subscribed
            proc = await asyncio.create_subprocess_exec(sys.executable, str(script), stdout=subprocess.PIPE,
                                                        stderr=subprocess.PIPE,
                                                        env={"FLUXFORGE_CONFIG": str(config), "PATH": "/usr/bin:/bin"})
            await wait_for(lambda: len(hub.subscribers) == 1, timeout=120, what="the strategy to subscribe")
            hub.publish("bars/interval=5s", live)
            await wait_for(lambda: all(not s.queue for s in hub.subscribers.values()), what="bars sent")
        out, err = await asyncio.wait_for(proc.communicate(), 60)   # the hub closed: the strategy exits
        return proc.returncode, out.decode(), err.decode()

    rc, out, err = asyncio.run(scenario())
    assert rc == 0, err
    lines = out.splitlines()
    iso = lambda ms: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()  # noqa: E731
    # EMAs warmed on the replayed 100, 101, 102: 103 keeps fast > slow, the drop to 90 turns it flat
    assert lines[:3] == [f"{iso(now)} 103.00 long", f"{iso(now + 10_000)} 90.00 flat", f"{iso(now + 15_000)} 91.00 flat"]
    assert lines[3].startswith("disconnected:") and len(lines) == 4
