"""`fluxforge loopback` as a subprocess: --print-config, ccxt over it, faults and stats over HTTP."""
from __future__ import annotations

import socket
import subprocess
import urllib.error

import ccxt
import ccxt.pro
import pytest

from fluxforge.loopback import LoopbackProcess
from fluxforge.loopback.process import fluxforge_command
from loopback_support import run, watch_until


def test_subprocess_serves_ccxt_and_takes_faults_over_http():
    with LoopbackProcess(["--symbols", "BTC/USDT,ETH/USDT", "--rate", "20", "--seed", "1"]) as lp:
        assert lp.info["host"] == "127.0.0.1" and lp.port > 0
        assert lp.info["ccxt"]["binance"]["urls"]["api"]["ws"]["spot"] == f"ws://127.0.0.1:{lp.port}/ws"

        async def body():
            ex = ccxt.pro.binance(lp.ccxt_config("binance"))
            symbols = ["BTC/USDT", "ETH/USDT"]
            try:
                await watch_until(lambda: ex.watch_order_book_for_symbols(symbols),
                                  lambda ob: ob["symbol"] == "ETH/USDT")
                lp.inject("gap", symbol="ETH/USDT")  # blocking HTTP call, fine for a test
                with pytest.raises(ccxt.ChecksumError):
                    await watch_until(lambda: ex.watch_order_book_for_symbols(symbols), lambda ob: False, 200)
            finally:
                await ex.close()

        run(body())
        stats = lp.stats(detail=True)
        eth = stats["protocols"]["binance"]["ETH/USDT"]["orderbook"]
        assert len(eth["dropped"]) == 1 and eth["ids"] == sorted(eth["ids"])
        with pytest.raises(urllib.error.HTTPError) as err:
            lp.inject("earthquake")
        assert err.value.code == 400
        pid = lp.pid
    assert lp.proc.returncode == 0, f"loopback {pid} did not exit cleanly on SIGTERM"


def test_cli_reports_a_taken_port_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([*fluxforge_command(), "loopback", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"cannot serve on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--fault", "gap@later"], "fault time"),
    (["--symbols", "BTCUSDT"], "BASE/QUOTE"),
    (["--mode", "replay"], "needs at least one capture FILE"),
    (["--mode", "replay", "/nonexistent/capture.gz"], "capture file not found"),
])
def test_cli_rejects_bad_arguments_with_one_line(args, message):
    proc = subprocess.run([*fluxforge_command(), "loopback", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
