"""Daedalus's sanitised partition symbols (`/` and `:` written as `-`) read back as ccxt symbols.

The rule follows ccxt's grammar BASE/QUOTE[:SETTLE[-EXPIRY...]]; `--symbol OLD=NEW`
covers a BASE or QUOTE with a `-` of its own, which the rule cannot know.
"""
import pyarrow as pa
import pytest

from fluxforge.migrate.daedalus_map import ccxt_symbols
from fluxforge.migrate.daedalus_schema import restore_symbol


@pytest.mark.parametrize("old, new", [
    ("BTC-USD", "BTC/USD"), ("BTC/USD", "BTC/USD"), ("BTC-USDT-USDT", "BTC/USDT:USDT"),
    ("BTC-USDT-USDT-240329", "BTC/USDT:USDT-240329"), ("ETH-USD-ETH-240329-3000-C", "ETH/USD:ETH-240329-3000-C"),
    ("BTCUSDT", "BTCUSDT"), ("BTC/USDT:USDT", "BTC/USDT:USDT"),
])
def test_restore_symbol(old, new):
    assert restore_symbol(old) == new


def test_overrides_win_and_every_change_is_recorded():
    restored = {}
    col = pa.chunked_array([["FOO-BAR-USD", "BTC-USD", None, "BTC-USD", "ETH/USD"]])
    out = ccxt_symbols(col, {"FOO-BAR-USD": "FOO-BAR/USD"}, restored)
    assert out.to_pylist() == ["FOO-BAR/USD", "BTC/USD", None, "BTC/USD", "ETH/USD"]
    assert restored == {"FOO-BAR-USD": "FOO-BAR/USD", "BTC-USD": "BTC/USD"}
