"""`fluxforge report`: a PNG chart of mid/microprice, spread, OFI and VPIN from the bars, trade-bar candles
(a symbol without bars: its trade bars and ticker features)."""
from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta, timezone

EPILOG = """\
time range: --date D (one UTC day), --last 1h (until now; s, m, h, d units),
or neither: the newest day that has bars.
--interval: bar length in seconds; default the coarsest with >= 100 bars in range.
--features: panels separated by ',', '+' shares a panel; a name is a bar column,
else an hf column, else the stem of one (mid -> mid_price).
Default: mid (bar close) + microprice (hf), relative spread in bps, OFI per bar,
VPIN (hf), and trade-bar candlesticks + volume when there are trade bars; a symbol
without bars: its trade bars and the ticker's mid and spread.

needs matplotlib: pip install 'fluxforge[plot]'

examples:
  fluxforge report --symbol BTC/USDT --last 6h -o btc.png
  fluxforge report --symbol ETH-USDT --date 2024-08-08 --interval 60 --features close+vwap_bid_5,kyle_lambda
"""
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument
    from ._data_dir import add_data_dir_argument

    p = sub.add_parser("report", help="chart mid/microprice, spread, OFI, VPIN and trade candles of one symbol to a PNG",
                       description="Draw a chart of one symbol's bars (features/bars/...) to a PNG file.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    add_data_dir_argument(p)
    p.add_argument("--symbol", "-s", required=True, help="ccxt symbol (BTC/USDT) or partition name (BTC-USDT)")
    p.add_argument("--exchange", "-e", help="exchange, when the symbol is on several")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--date", "-d", metavar="YYYY-MM-DD", help="one UTC day")
    when.add_argument("--last", metavar="DURATION", help="the last DURATION until now, e.g. 90m, 1h, 2d")
    p.add_argument("--interval", "-i", type=int, metavar="SECONDS", help="bar interval in seconds")
    p.add_argument("--features", "-f", metavar="SPEC", help="panels to draw (see below)")
    p.add_argument("-o", "--output", metavar="FILE.png", help="output file (default report-<symbol>-<day>.png)")
    p.add_argument("--depth-profile", action="store_true",
                   help="draw the depth profile (hf band volumes: mean per band, and over time) instead")
    p.set_defaults(func=run)


def parse_range(date: str | None, last: str | None, now: datetime | None = None):
    """(start, end) datetimes in UTC, or (None, None) for 'the newest day'."""
    from ..cli import UserError

    now = now or datetime.now(timezone.utc)
    if date:
        try:
            day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            raise UserError(f"--date {date!r}: expected YYYY-MM-DD") from None
        return day, day + timedelta(days=1)
    if last:
        m = _DURATION.match(last.strip())
        if not m or float(m[1]) <= 0:
            raise UserError(f"--last {last!r}: expected a duration like 30m, 1h or 2d")
        return now - timedelta(seconds=float(m[1]) * _UNITS[m[2]]), now
    return None, None


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError
    from ..observe.feature_tree import NoBars, UnreadableFeatureFile, newest_date, pick_interval, resolve_symbol
    from ..observe.report import ReportError, chart_symbol, load_pyplot
    from ._data_dir import load_for_data_dir

    cfg = load_for_data_dir(args.config, args.data_dir)
    start, end = parse_range(args.date, args.last)
    features = cfg.features_dir
    try:
        load_pyplot()  # fail before reading anything when the extra is missing
        exchange, symbol = resolve_symbol(features, args.symbol, args.exchange)
        if start is None:
            start, end = parse_range(newest_date(features, exchange, symbol), None)
        if args.depth_profile:
            from ..observe.depth_profile import draw_depth_profile
            out = args.output or f"depth-{symbol}-{start:%Y%m%d}.png"
            rows = draw_depth_profile(features, exchange, symbol, out, start, end)
            print(f"wrote {out}: {exchange} {symbol}, depth profile of {rows:,} hf rows")
            return 0
        interval = args.interval or pick_interval(features, exchange, symbol, start, end)
        out = args.output or f"report-{symbol}-{start:%Y%m%d}.png"
        series, panels = chart_symbol(features, exchange, symbol, interval, out, start, end, args.features)
    except (NoBars, ReportError, UnreadableFeatureFile) as e:
        raise UserError(str(e), exit_code=1) from None
    print(f"wrote {out}: {exchange} {symbol}, {series.describe()}, panels: {'; '.join(p.title for p in panels)}")
    return 0
