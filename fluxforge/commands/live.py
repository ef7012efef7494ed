"""`fluxforge live`: print live feature rows as they arrive (docs/live.md).

Why a console subscriber: the quickest check that live serving works, and a
pipe into any tool: JSON lines (the wire's own `row` lines) when stdout is not
a terminal or with --json, a compact one-line-per-row table on a terminal.
It takes the Arrow wire and writes those lines itself (live/wire.py `json_rows`, what the
endpoint would send): the JSON encoding is paid by this process, not by the ETL.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timezone

EPILOG = """\
products: hf, bars (every interval) or bars/interval=60s, trade_bars, volume_bars, dollar_bars,
  trades (per-trade rows), ticker -- those the ETL's config turns on.
--last 5: first replay the rows of the last 5 minutes the ETL still holds (flagged replay), then live.
--reconnect: keep going when the ETL restarts (or drops this subscriber): connect again and
  resume where the rows stopped, every row printed once.

examples:
  fluxforge live --symbol BTC/USDT --product hf
  fluxforge live --product bars/interval=60s --last 30 --json | jq .close
"""
# Columns a terminal line shows when the row has them (else its first few values).
PREFERRED = ("close", "mid_price", "microprice", "spread", "volume", "ofi_1", "vpin", "n_trades")


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument
    from ._data_dir import add_data_dir_argument

    p = sub.add_parser("live", help="print live feature rows as the ETL publishes them",
                       description="Subscribe to the ETL's live features and print each row as it arrives.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    add_data_dir_argument(p)
    p.add_argument("--symbol", "-s", action="append", help="ccxt symbol or partition name (repeatable)")
    p.add_argument("--exchange", "-e", action="append", help="exchange (repeatable)")
    p.add_argument("--product", "-p", action="append", help="product (repeatable; default all)")
    p.add_argument("--last", type=float, metavar="MIN", help="replay the last MIN minutes first")
    p.add_argument("--json", action="store_true", help="JSON lines even on a terminal")
    p.add_argument("--reconnect", action="store_true",
                   help="outlive ETL restarts: reconnect and resume, each row printed once")
    p.add_argument("--count", type=int, metavar="N", help="exit after N rows")
    p.add_argument("--socket", metavar="PATH", help="the live Unix socket (default: from the config)")
    p.add_argument("--url", metavar="WS_URL", help="a WebSocket instead, e.g. ws://127.0.0.1:9466/live")
    p.add_argument("--token", help="token for --url (default: etl.live.token from the config)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError
    from ..live.client import LiveClosed, LiveError
    from ..live.protocol import MAX_LAST_MINUTES

    if args.last is not None and not 0 < args.last <= MAX_LAST_MINUTES:  # NaN and infinity too
        raise UserError(f"--last: expected a positive number of minutes, at most {MAX_LAST_MINUTES:g}")
    if args.count is not None and args.count < 1:
        raise UserError("--count: expected a positive number")
    socket, token = _endpoint(args)
    as_json = args.json or not sys.stdout.isatty()
    try:
        return asyncio.run(_print_rows(args, socket, token, as_json))
    except LiveError as e:
        raise UserError(f"subscription refused: {e}") from None
    except LiveClosed as e:
        raise UserError(str(e), exit_code=1) from None


def _endpoint(args: argparse.Namespace):
    """(socket path or None, token): from the flags, else the config (or --data-dir)."""
    if args.url is not None:
        token = args.token
        if token is None:
            from ..config import ConfigError
            from ._data_dir import load_for_data_dir

            try:
                token = load_for_data_dir(args.config, args.data_dir).etl.live.token
            except ConfigError:  # no readable config: connect without a token
                token = None
        return None, token
    if args.socket is not None:
        return args.socket, None
    from ..live.settings import client_socket_path
    from ._data_dir import load_for_data_dir

    cfg = load_for_data_dir(args.config, args.data_dir)
    return client_socket_path(cfg.etl.live, cfg.state_dir), None


async def _print_rows(args, socket, token, as_json: bool) -> int:
    import pyarrow as pa

    from ..live import wire
    from ..live.client import frames

    seen = connections = 0
    schemas: dict = {}
    out = sys.stdout
    line = TableLines()

    def retry(error, delay: float) -> None:
        print(f"# disconnected: {error}; reconnecting in {delay:g}s", file=sys.stderr, flush=True)

    async for head, payload in frames(products=args.product, exchanges=args.exchange, symbols=args.symbol,
                                      last_minutes=args.last, format="arrow", socket=socket, url=args.url,
                                      token=token, reconnect=args.reconnect, on_retry=retry):
        kind = head.get("type")
        if kind == "subscribed":
            connections += 1
            replaying = f": replaying {head.get('replay_rows', 0)} rows" if args.last or connections > 1 else ""
            if head.get("replay_left_out"):
                replaying += f" (the {head['replay_left_out']} older ones did not fit the buffer)"
            print(f"# {'resumed' if connections > 1 else 'subscribed'}{replaying}", file=sys.stderr, flush=True)
        elif kind == "live":
            print("# live", file=sys.stderr)
        elif kind == "schema":
            schemas[head["product"]] = wire.read_schema(head, payload)
        elif kind == "batch":
            batch = pa.Table.from_batches([wire.read_batch(payload, schemas[head["product"]])])
            for text, _ in wire.json_rows(head["product"], batch, head["replay"]):
                out.write((text if as_json else line(json.loads(text))) + "\n")
                seen += 1
                if args.count is not None and seen >= args.count:
                    out.flush()
                    return 0
            out.flush()
    return 0


class TableLines:
    """A terminal's compact table: `HH:MM:SS.mmm R product exchange:symbol name=value ...` (UTC;
    R: a replayed row), the product and stream columns padded to the widest seen so far, so
    the values line up however long a product (`trade_bars/interval=3600s`) or a symbol is."""

    def __init__(self):
        self.widths = [len("bars/interval=60s"), len("binance:BTC/USDT")]

    def __call__(self, row: dict) -> str:
        ts = row.get("timestamp")
        when = datetime.fromtimestamp(ts / 1000, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3] \
            if isinstance(ts, int) else str(ts)
        skip = {"type", "product", "replay", "timestamp", "exchange", "symbol", "nonce", "date"}
        names = [n for n in PREFERRED if n in row] or [n for n in row if n not in skip][:4]
        values = " ".join(f"{n}={_fmt(row[n])}" for n in names)
        cells = [str(row.get("product", "?")), f"{row.get('exchange', '?')}:{row.get('symbol', '?')}"]
        self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells)]
        padded = " ".join(f"{c:<{w}}" for c, w in zip(cells, self.widths))
        return f"{when} {'R' if row.get('replay') else ' '} {padded} {values}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
