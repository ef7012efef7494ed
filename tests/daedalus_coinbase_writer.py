"""Test-side records of Daedalus's native Coinbase Advanced Trade collector, and the bronze rows they must become.

Why separate from the importer: the import must be checked against messages shaped as
Coinbase sends them (Advanced Trade WebSocket docs; the examples in ccxt.pro coinbase's
handlers) and wrapped as Daedalus's `CoinbaseCollector` stored them
(`serialize_json_message`: `{"capture_ts", "data": <message>, "metadata": {"source",
"channel"}}`, heartbeats skipped), with the expected rows derived here from the messages
by the rules ccxt.pro applies, not by the importer's code.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _iso_ns(t: datetime, extra_digits: str = "417") -> str:
    """Coinbase's nanosecond timestamps: µs from `t` plus three more digits."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + extra_digits + "Z"


def _ms(t: datetime) -> int:
    return (t - EPOCH) // timedelta(milliseconds=1)


def _wrap(message: dict, capture: datetime) -> dict:
    return {"capture_ts": capture.isoformat(), "data": message,
            "metadata": {"source": "coinbase", "channel": message.get("channel", "unknown")}}


def native_records(start: datetime, minutes: int, products=("BTC-USD", "ETH-USD"), seed: int = 5) -> list[dict]:
    """One connection's messages (sequence_num 0, 1, ...), a reconnect half-way (0 again, fresh
    snapshots), books with deletes and multi-product messages, trades newest first, tickers and
    5-minute candles, the subscriptions acks Daedalus also stored."""
    rng = random.Random(seed)
    out: list[dict] = []
    seq = 0
    t = start
    mids = {p: 100.0 + 50 * i for i, p in enumerate(products)}

    def send(message: dict) -> None:
        nonlocal seq, t
        t += timedelta(microseconds=rng.randint(1, 300_000))
        message = {"channel": message.pop("channel"), "client_id": "", "timestamp": _iso_ns(t - timedelta(milliseconds=2)),
                   "sequence_num": seq, **message}
        seq += 1
        out.append(_wrap(message, t))

    def connect() -> None:
        nonlocal seq
        seq = 0
        for channel in ("level2", "market_trades", "ticker", "candles"):
            send({"channel": "subscriptions", "events": [{"subscriptions": {channel: list(products)}}]})
        for p in products:
            m = mids[p]
            bids = [{"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": f"{m - 0.01 * (i + 1):.2f}",
                     "new_quantity": f"{rng.uniform(0.1, 3):.8f}"} for i in range(12)]
            asks = [{"side": "offer", "event_time": "1970-01-01T00:00:00Z", "price_level": f"{m + 0.01 * (i + 1):.2f}",
                     "new_quantity": f"{rng.uniform(0.1, 3):.8f}"} for i in range(12)]
            send({"channel": "l2_data", "events": [{"type": "snapshot", "product_id": p, "updates": bids + asks}]})

    connect()
    end = start + timedelta(minutes=minutes)
    n = 0
    while t < end:
        n += 1
        if n == 40:
            connect()  # a reconnect: Daedalus opened a new connection, sequence_num restarts
        events = []
        for p in (products if n % 3 == 0 else products[n % len(products):][:1]):
            m = mids[p]
            ups = []
            for _ in range(rng.randint(1, 4)):
                side = rng.choice(["bid", "offer"])
                px = m - 0.01 * rng.randint(1, 15) if side == "bid" else m + 0.01 * rng.randint(1, 15)
                qty = "0" if rng.random() < 0.25 else f"{rng.uniform(0.1, 3):.8f}"
                ups.append({"side": side, "event_time": _iso_ns(t, "000"), "price_level": f"{px:.2f}", "new_quantity": qty})
            events.append({"type": "update", "product_id": p, "updates": ups})
        send({"channel": "l2_data", "events": events})
        p = products[n % len(products)]
        trades = [{"trade_id": str(900_000 + 10 * n + k), "product_id": p, "price": f"{mids[p] + rng.uniform(-0.05, 0.05):.2f}",
                   "size": f"{rng.uniform(0.001, 1):.8f}", "side": "UNKNOWN_ORDER_SIDE" if (n + k) % 23 == 0 else rng.choice(["BUY", "SELL"]),
                   "time": (t - timedelta(milliseconds=5 * k)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}
                  for k in range(rng.randint(1, 3))]  # newest first
        send({"channel": "market_trades", "events": [{"type": "update", "trades": trades}]})
        if n % 4 == 0:
            send({"channel": "ticker", "events": [{"type": "update", "tickers": [
                {"type": "ticker", "product_id": q, "price": f"{mids[q]:.2f}", "volume_24_h": "16038.28770938",
                 "low_24_h": f"{mids[q] - 3:.2f}", "high_24_h": f"{mids[q] + 3:.2f}", "low_52_w": "15460",
                 "high_52_w": "48240", "price_percent_chg_24_h": "-4.15775596190603",
                 "best_bid": f"{mids[q] - 0.01:.2f}", "best_bid_quantity": "0.5",
                 "best_ask": f"{mids[q] + 0.01:.2f}", "best_ask_quantity": "" if n % 8 == 0 else "0.25"}
                for q in products]}]})
        if n % 5 == 0:
            five = int(t.timestamp()) // 300 * 300
            send({"channel": "candles", "events": [{"type": "update", "candles": [
                {"start": str(five), "high": f"{mids[q] + 1:.2f}", "low": f"{mids[q] - 1:.2f}", "open": f"{mids[q]:.2f}",
                 "close": f"{mids[q] + 0.5:.2f}", "volume": f"{rng.uniform(1, 100):.8f}", "product_id": q}
                for q in products]}]})
        t += timedelta(seconds=2)
    return out


def _f(s: str):
    return float(s) if s != "" else None


def expected_native_bronze(records: list[dict]) -> dict[str, list[dict]]:
    """The bronze rows (exchange `coinbase`, ccxt's unified symbols) each native message must become."""
    out = {"orderbook": [], "trades": [], "ticker": [], "ohlcv": []}
    for rec in records:
        m = rec["data"]
        recv = (datetime.fromisoformat(rec["capture_ts"]) - EPOCH) // timedelta(microseconds=1) * 1000
        sent = datetime.fromisoformat(m["timestamp"][:26] + "+00:00")  # ns -> µs
        base = {"exchange": "coinbase", "recv_ns": recv}
        for ev in m.get("events", []):
            if m["channel"] == "l2_data":
                side = {s: [(float(u["price_level"]), float(u["new_quantity"])) for u in ev["updates"] if u["side"] == name]
                        for s, name in (("bid", "bid"), ("ask", "offer"))}
                out["orderbook"].append(dict(base, symbol=ev["product_id"].replace("-", "/"), timestamp=_ms(sent),
                                             kind="snapshot" if ev["type"] == "snapshot" else "delta",
                                             nonce=m["sequence_num"], prev_nonce=None, checksum=None,
                                             bid_px=[p for p, _ in side["bid"]], bid_sz=[q for _, q in side["bid"]],
                                             ask_px=[p for p, _ in side["ask"]], ask_sz=[q for _, q in side["ask"]]))
            elif m["channel"] == "market_trades":
                for tr in reversed(ev["trades"]):
                    side = tr["side"].lower()
                    out["trades"].append(dict(base, symbol=tr["product_id"].replace("-", "/"),
                                              timestamp=_ms(datetime.fromisoformat(tr["time"][:-1] + "+00:00")),
                                              trade_id=tr["trade_id"], price=float(tr["price"]), amount=float(tr["size"]),
                                              side=None if side == "unknown_order_side" else side))
            elif m["channel"] == "ticker":
                for tk in ev["tickers"]:
                    out["ticker"].append(dict(base, symbol=tk["product_id"].replace("-", "/"), timestamp=_ms(sent),
                                              bid=_f(tk["best_bid"]), bid_size=_f(tk["best_bid_quantity"]),
                                              ask=_f(tk["best_ask"]), ask_size=_f(tk["best_ask_quantity"]),
                                              last=_f(tk["price"]), open=None, high=_f(tk["high_24_h"]),
                                              low=_f(tk["low_24_h"]), base_volume=_f(tk["volume_24_h"]),
                                              quote_volume=None, vwap=None, percentage=_f(tk["price_percent_chg_24_h"])))
            elif m["channel"] == "candles":
                for c in ev["candles"]:
                    out["ohlcv"].append(dict(base, symbol=c["product_id"].replace("-", "/"), timestamp=int(c["start"]) * 1000,
                                             timeframe="5m", open=float(c["open"]), high=float(c["high"]),
                                             low=float(c["low"]), close=float(c["close"]), volume=float(c["volume"])))
    return out
