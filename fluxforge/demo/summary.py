"""What a demo run produced, in a few lines: rows per symbol, features, files, how to read them.

Why computed from the files: the summary must describe what is on disk (the
segments the collector finished and the feature parts the ETL wrote), not what
the processes believe they did, so it doubles as a check of the run.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from ..bronze.schemas import channel_file
from ..bronze.segments import REASON, SegmentStore
from ..etl.naming import product_tree, symbol_path_value
from .live_watch import LiveCheck

CHANNELS = ("orderbook", "trades", "ticker", "events")
FINISHED = ("ready", "processing", "done", "failed")


@dataclass
class DemoSummary:
    directory: Path
    data_dir: Path
    seconds: float
    segments: dict[str, int]                                    # state -> count
    rows: dict[str, dict[str, int]]                             # symbol -> channel -> rows
    hf_rows: dict[str, int] = field(default_factory=dict)       # symbol partition -> rows
    hf_columns: int = 0
    bar_rows: dict[int, int] = field(default_factory=dict)      # interval s -> rows (mid-price bars/)
    product_rows: dict[str, int] = field(default_factory=dict)  # other trees (trade_bars, dollar_bars, ...) -> rows
    trade_bar_intervals: list[int] = field(default_factory=list)  # seconds, of features/trade_bars/
    feature_files: int = 0
    chart: Path | None = None
    chart_note: str = ""
    failures: list[str] = field(default_factory=list)           # "<segment>: <reason.txt>"
    example_segment: Path | None = None                         # for the `fluxforge inspect` hint
    live: LiveCheck | None = None                               # the demo's own subscriber (None: live off)
    live_note: str = ""                                         # why live was off

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"


def bronze_rows(store: SegmentStore) -> dict[str, dict[str, int]]:
    """Rows per symbol and channel in every finished segment."""
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for state in FINISHED:
        for seg in store.list(state):
            for channel in CHANNELS:
                path = seg / channel_file(channel, finished=True)
                if not path.is_file():
                    continue
                table = pq.read_table(path, columns=["symbol"])
                if table.num_rows == 0:
                    continue
                for row in table.group_by("symbol").aggregate([([], "count_all")]).to_pylist():
                    rows[row["symbol"] or "(exchange)"][channel] += row["count_all"]
    return {s: dict(c) for s, c in sorted(rows.items())}


def feature_counts(features_dir: Path) -> tuple[dict[str, int], int, dict[int, int], dict[str, int], list[int], int]:
    """(hf rows per symbol, hf feature columns, bar rows per interval, rows per other tree, trade-bar
    intervals, number of files) from Parquet footers."""
    hf_rows: dict[str, int] = defaultdict(int)
    bar_rows: dict[int, int] = defaultdict(int)
    product_rows: dict[str, int] = defaultdict(int)
    trade_bar_intervals: set[int] = set()
    hf_columns, files = 0, 0
    for path in sorted(features_dir.rglob("*.parquet")):
        if path.name.startswith("."):
            continue
        meta = pq.read_metadata(path)
        files += 1
        parts = dict(p.split("=", 1) for p in path.relative_to(features_dir).parts[1:-1] if "=" in p)
        tree = path.relative_to(features_dir).parts[0]
        if tree == "hf":
            hf_rows[parts.get("symbol", "?")] += meta.num_rows
            hf_columns = max(hf_columns, meta.num_columns)
        elif tree == "bars":
            bar_rows[int(parts.get("interval", "0s").rstrip("s"))] += meta.num_rows
        else:
            product_rows[tree] += meta.num_rows
            if tree == "trade_bars":
                trade_bar_intervals.add(int(parts.get("interval", "0s").rstrip("s")))
    return (dict(sorted(hf_rows.items())), hf_columns, dict(sorted(bar_rows.items())),
            dict(sorted(product_rows.items())), sorted(trade_bar_intervals), files)


def failure_reasons(store: SegmentStore) -> list[str]:
    out = []
    for seg in store.list("failed"):
        try:
            reason = (seg / REASON).read_text(errors="replace").strip().splitlines()[0]
        except (OSError, IndexError):
            reason = "(no reason.txt)"
        out.append(f"{seg.name}: {reason}")
    return out


def summarize(directory: Path, data_dir: Path, seconds: float) -> DemoSummary:
    store = SegmentStore(data_dir / "segments")
    hf_rows, hf_columns, bar_rows, product_rows, trade_bar_intervals, files = feature_counts(data_dir / "features")
    return DemoSummary(
        directory=directory, data_dir=data_dir, seconds=seconds,
        segments={s: len(store.list(s)) for s in ("active",) + FINISHED},
        rows=bronze_rows(store), hf_rows=hf_rows, hf_columns=hf_columns, bar_rows=bar_rows,
        product_rows=product_rows, trade_bar_intervals=trade_bar_intervals,
        feature_files=files, failures=failure_reasons(store),
        example_segment=next(iter(store.list("done")), None),
    )


def duckdb_query(features_dir: Path, interval_s: int) -> str:
    """SQL that reads the demo's bars with their Hive partition columns (printed, and run by the tests)."""
    glob = features_dir / product_tree("bars", interval_s) / "*" / "*" / "*" / "*.parquet"
    return (f"SELECT symbol, count(*) AS bars, min(timestamp) AS first, max(timestamp) AS last "
            f"FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY symbol ORDER BY symbol")


def trade_bars_query(features_dir: Path, interval_s: int) -> str:
    """SQL that turns the demo's trade bars into one OHLCV line per symbol (printed, and run by the tests)."""
    glob = features_dir / product_tree("trade_bars", interval_s) / "*" / "*" / "*" / "*.parquet"
    return (f"SELECT symbol, count(*) AS bars, arg_min(open, timestamp) AS open, max(high) AS high, "
            f"min(low) AS low, arg_max(close, timestamp) AS close, sum(volume) AS volume "
            f"FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY symbol ORDER BY symbol")


def pyarrow_snippet(features_dir: Path) -> str:
    """Python that loads the hf tree as one table with its partition columns (printed, and run by the tests)."""
    return (f"import pyarrow.dataset as ds; t = ds.dataset('{features_dir / 'hf'}', partitioning='hive').to_table(); "
            f"print(t.num_rows, 'rows'); print(t.slice(0, 3))")


def installed_commands() -> tuple[str, str]:
    """(fluxforge, python) as a shell can run them: the executables of this very install, so the
    printed commands work as printed with no venv activated and nothing else installed."""
    python = Path(sys.executable)
    script = python.parent / "fluxforge"
    return (str(script) if script.exists() else "fluxforge"), str(python)


def live_lines(live: LiveCheck | None, note: str) -> list[str]:
    """What the demo's subscriber received while the demo ran, and whether it is what landed."""
    if live is None:
        return [f"  live      off: {note}"]
    if live.error is not None:
        return [f"  live      FAILED: {live.error}"]
    late = f"; hf rows p50 {live.latency[0]:.2f} s, p99 {live.latency[1]:.2f} s after the exchange event" \
        if live.latency else ""
    replayed = f" ({live.replayed:,} sent from its recent rows: published before the demo subscribed)" \
        if live.replayed else ""
    lines = [f"  live      {live.received:,} rows to a subscriber as they became final{replayed}{late}"]
    if live.differences:
        lines += [f"  LIVE ROWS ARE NOT THE PARQUET ROWS: {d}" for d in live.differences[:5]]
        lines += [f"  ... and {len(live.differences) - 5} more"] if len(live.differences) > 5 else []
    else:
        lines.append(f"            each equal to its Parquet row: {live.landed:,} rows landed in {live.products} "
                     f"product/symbol streams, in the same order, every column")
    return lines


def render(s: DemoSummary) -> str:
    lines = [f"FluxForge demo: {s.seconds:.0f} s of a simulated market, collected and transformed offline", ""]
    channels = [c for c in CHANNELS if any(c in r for r in s.rows.values())]
    width = max([len(sym) for sym in s.rows] + [6])
    lines.append(f"  {'symbol':<{width}}  " + "  ".join(f"{c:>9}" for c in channels) + f"  {'hf rows':>9}")
    for sym, per in s.rows.items():
        hf = s.hf_rows.get(symbol_path_value(sym), 0)
        lines.append(f"  {sym:<{width}}  " + "  ".join(f"{per.get(c, 0):>9,}" for c in channels) + f"  {hf:>9,}")
    lines.append("")
    seg = ", ".join(f"{n} {state}" for state, n in s.segments.items() if n)
    bars = ", ".join(f"{n:,} x {iv}s" for iv, n in s.bar_rows.items())
    lines.append(f"  segments  {seg or 'none'}")
    lines += [f"  FAILED    {f}" for f in s.failures]
    lines.append(f"  features  {sum(s.hf_rows.values()):,} hf rows x {s.hf_columns} columns; bars {bars or 'none'}; "
                 f"{s.feature_files} Parquet files")
    if s.product_rows:
        lines.append("  products  " + ", ".join(f"{n:,} {tree} rows" for tree, n in s.product_rows.items()))
    lines += live_lines(s.live, s.live_note)
    lines.append("")
    lines.append(f"  bronze    {s.data_dir / 'segments' / 'done'}")
    lines.append(f"  features  {s.features_dir}")
    lines.append(f"  logs      {s.directory / 'logs'}")
    lines.append(f"  chart     {s.chart}" if s.chart else f"  chart     skipped: {s.chart_note}")
    lines.append(f"  config    {s.directory / 'config.yaml'}")
    lines.append("")
    interval = min(s.bar_rows, default=1)
    cfg = s.directory / "config.yaml"
    other = list(s.rows)[-1] if s.rows else "BTC/USDT"
    fluxforge, python = installed_commands()
    lines.append("look at them:")
    lines.append(f"  {fluxforge} status --config {cfg}")
    lines.append(f"  {fluxforge} report --config {cfg} --symbol {other} -o {other.replace('/', '-')}.png")
    if s.example_segment:
        lines.append(f"  {fluxforge} inspect {s.example_segment}")
    lines.append(f'  {python} -c "import duckdb; duckdb.sql(\\"{duckdb_query(s.features_dir, interval)}\\").show()"')
    if s.trade_bar_intervals:
        query = trade_bars_query(s.features_dir, s.trade_bar_intervals[0])  # the finest: most bars
        lines.append(f'  {python} -c "import duckdb; duckdb.sql(\\"{query}\\").show()"')
    lines.append(f'  {python} -c "{pyarrow_snippet(s.features_dir)}"')
    return "\n".join(lines)
