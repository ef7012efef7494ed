"""`fluxforge replay SRC... --out DIR`: recompute features from bronze segments."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument

    p = sub.add_parser("replay", help="recompute features from directories of bronze segments "
                                      "(same files the ETL service writes)")
    add_config_argument(p)
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="a segment directory, a directory of segments, or a segments/ root")
    p.add_argument("--out", required=True, metavar="DIR", help="feature tree to write (hf/ and bars/ inside)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..etl import return_freed_memory_promptly

    return_freed_memory_promptly()  # first: before anything imports pyarrow
    from pathlib import Path

    from ..cli import UserError
    from ..config import Config, config_path, load_config
    from ..etl.replay import find_segments, replay
    from ..logs import configure_logging
    from ..progress import Progress

    # Feature options come from the config when there is one (explicit or the default path).
    cfg = load_config(args.config) if args.config or config_path(None).exists() else Config()
    try:
        segments = find_segments(args.sources)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if not segments:
        raise UserError(f"no bronze segments found under {' '.join(args.sources)}")
    configure_logging(cfg.logging.level, cfg.logging.format, "fluxforge-replay")
    out = Path(args.out)
    total = sum(f.stat().st_size for s in segments for f in s.iterdir() if f.is_file())
    with Progress(total / 1e6, "replay", " MB") as bar:
        def advance(seg_dir, result):
            size = sum(f.stat().st_size for f in seg_dir.iterdir() if f.is_file())
            bar.advance(size / 1e6, note=seg_dir.name)
        summary = replay(segments, out, cfg.etl.features, cfg.etl.row_group_rows, on_segment=advance,
                         reorder_window=cfg.etl.reorder_window, trade_options=cfg.etl.trades,
                         symbol_overrides=cfg.etl.symbol_overrides, max_gap_ms=cfg.etl.max_gap_ms)
    print(f"replayed {len(summary.done)} segments ({summary.books:,} book snapshots) into {out}"
          + (f"; skipped {len(summary.skipped)} unusable" if summary.skipped else ""))
    for name, reason in summary.skipped:
        print(f"  skipped {name}: {reason}")
    return 1 if summary.skipped and not summary.done else 0
