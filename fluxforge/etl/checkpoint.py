"""The ETL checkpoint: every symbol's kernel state + the last segment it includes.

Why one file, replaced atomically: the checkpoint is the ETL's only memory.  It is
written after a segment's outputs are durable and before the segment moves to
done/, so after a crash exactly one of these holds for a segment in processing/:

- checkpoint.last_segment == that segment: its work is complete, only the move to
  done/ was lost -- finish the move;
- otherwise the checkpoint is the state *before* it -- redo the segment (its
  outputs are overwritten, since their names derive from the segment id).

Format: an Arrow IPC file (exchange, symbol, state: the engine's get_state() bytes,
carry: rows and resets held for the next segment, see carry.Carry)
with the last segment, the feature-options fingerprint and the running data-loss
counters (`late_dropped`, `duplicate_trades`: what `fluxforge status` reports) in
the schema metadata.

A checkpoint that cannot be read (bit rot on a failing card: the atomic replace rules out a
torn one) is CheckpointUnreadable; the runner sets it aside and starts from empty kernel
state rather than failing at every start for good (etl/runner.py).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..fsio import atomic_path, fsync_dir
from ..logs import get_logger
from .bronze_reader import Key

FORMAT = "2"
SCHEMA = pa.schema([
    pa.field("exchange", pa.string(), nullable=False),
    pa.field("symbol", pa.string(), nullable=False),
    pa.field("state", pa.binary(), nullable=False),
    pa.field("carry", pa.binary(), nullable=False),
])

log = get_logger("fluxforge.etl.checkpoint")


class CheckpointUnreadable(ValueError):
    """The checkpoint file is not a readable checkpoint (not an Arrow file, truncated, columns missing)."""


class CheckpointFormatUnknown(ValueError):
    """A checkpoint of another format: another FluxForge version wrote it (a downgrade)."""


@dataclass
class Checkpoint:
    last_segment: str | None = None
    options_fingerprint: str | None = None
    symbols: dict[Key, tuple[bytes, bytes]] = field(default_factory=dict)  # (engine state, carry)
    counters: dict[str, int | str] = field(default_factory=dict)  # late_dropped, duplicate_trades, ...


def _counters(text: str | None) -> dict[str, int | str]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class CheckpointStore:
    """`<state_dir>/etl/checkpoint.arrow`, replaced with temp + fsync + rename."""

    def __init__(self, state_dir: str | Path):
        self.path = Path(state_dir) / "etl" / "checkpoint.arrow"

    def counters(self) -> dict[str, int | str]:
        """Only the counters (reads the schema, not the kernel state): for `fluxforge status`."""
        if not self.path.exists():
            return {}
        with pa.OSFile(str(self.path), "rb") as f:
            meta = pa.ipc.open_file(f).schema.metadata or {}
        return _counters(meta.get(b"counters", b"").decode())

    def load(self) -> Checkpoint:
        if not self.path.exists():
            return Checkpoint()
        try:
            with pa.OSFile(str(self.path), "rb") as f:
                table = pa.ipc.open_file(f).read_all()
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        except OSError as e:
            if e.errno is not None:
                raise  # the disk's error (EIO, ...), not the file's content: nothing to set aside for
            raise CheckpointUnreadable(f"{self.path}: not a readable checkpoint: {e}") from None  # (Arrow's)
        except (pa.ArrowException, UnicodeDecodeError) as e:
            raise CheckpointUnreadable(f"{self.path}: not a readable checkpoint: {e}") from None
        if meta.get("format") != FORMAT:  # (another version's: not set aside -- that version can read it)
            raise CheckpointFormatUnknown(f"{self.path}: checkpoint format {meta.get('format')!r}, this "
                                          f"version reads {FORMAT!r}")
        if not set(SCHEMA.names) <= set(table.schema.names):
            raise CheckpointUnreadable(f"{self.path}: columns {table.schema.names}, expected {SCHEMA.names}")
        cols = table.to_pydict()
        symbols = {(ex, sym): (state, carry) for ex, sym, state, carry in
                   zip(cols["exchange"], cols["symbol"], cols["state"], cols["carry"])}
        return Checkpoint(meta.get("last_segment") or None, meta.get("options") or None, symbols,
                          _counters(meta.get("counters")))

    def set_aside(self) -> Path:
        """Rename an unreadable checkpoint out of the way (kept for a look, never read again)."""
        aside = self.path.with_name(f"{self.path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        os.replace(self.path, aside)
        fsync_dir(self.path.parent)
        return aside

    def save(self, ckpt: Checkpoint) -> None:
        keys = sorted(ckpt.symbols)
        table = pa.table({
            "exchange": [k[0] for k in keys],
            "symbol": [k[1] for k in keys],
            "state": [ckpt.symbols[k][0] for k in keys],
            "carry": [ckpt.symbols[k][1] for k in keys],
        }, schema=SCHEMA.with_metadata({
            "format": FORMAT,
            "last_segment": ckpt.last_segment or "",
            "options": ckpt.options_fingerprint or "",
            "counters": json.dumps(ckpt.counters, sort_keys=True),
        }))
        with atomic_path(self.path) as tmp:
            with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
                w.write_table(table)
