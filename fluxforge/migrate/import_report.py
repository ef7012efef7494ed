"""What one `fluxforge import daedalus` run did, counted, and its text for the operator.

Why its own type: an import over months of files must never stop at one bad line or
file, so every problem becomes a count here (with a few examples for the operator to
look at), and the command prints it at the end; nothing is silently dropped.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MAX_EXAMPLES = 10


@dataclass
class ImportReport:
    files_read: int = 0
    files_already_imported: list[str] = field(default_factory=list)
    bad_files: list[tuple[str, str]] = field(default_factory=list)       # (file, reason): nothing imported
    damaged_files: list[tuple[str, int, str]] = field(default_factory=list)  # (file, rows kept, reason)
    empty_files: list[str] = field(default_factory=list)
    bad_lines: Counter = field(default_factory=Counter)                   # reason -> lines
    bad_line_examples: list[tuple[str, int, str]] = field(default_factory=list)
    dropped_rows: Counter = field(default_factory=Counter)                # reason -> rows
    rows: Counter = field(default_factory=Counter)                        # bronze channel -> rows imported
    unmapped_channels: Counter = field(default_factory=Counter)           # old channel -> records
    unmapped_fields: Counter = field(default_factory=Counter)             # "channel.field" -> rows
    symbols_restored: dict[str, str] = field(default_factory=dict)        # sanitised -> ccxt symbol
    exchanges_renamed: dict[str, str] = field(default_factory=dict)       # Daedalus id -> ccxt.pro id
    segments: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def bad_line(self, path: Path, line_no: int, reason: str) -> None:
        self.bad_lines[reason] += 1
        if len(self.bad_line_examples) < MAX_EXAMPLES:
            self.bad_line_examples.append((str(path), line_no, reason))

    @property
    def problems(self) -> int:
        """Inputs (files, lines, rows) that were not imported: what makes the exit code 1."""
        return (len(self.bad_files) + len(self.damaged_files) + sum(self.bad_lines.values())
                + sum(self.dropped_rows.values()))

    def lines(self) -> list[str]:
        out = [f"imported {sum(self.rows.values()):,} rows from {self.files_read} files into "
               f"{len(self.segments)} segments"
               + (f" ({', '.join(f'{c} {n:,}' for c, n in sorted(self.rows.items()))})" if self.rows else "")]
        if self.files_already_imported:
            out.append(f"skipped {len(self.files_already_imported)} files imported before (same content)")
        for name in self.segments:
            out.append(f"  segment {name}")
        for path, reason in self.bad_files:
            out.append(f"unreadable file, nothing imported: {path}: {reason}")
        for path, kept, reason in self.damaged_files:
            out.append(f"damaged file, {kept:,} rows before the damage imported: {path}: {reason}")
        for path in self.empty_files:
            out.append(f"empty file: {path}")
        if self.bad_lines:
            out.append(f"malformed lines skipped: {sum(self.bad_lines.values()):,}")
            out += [f"  {n:,} x {reason}" for reason, n in self.bad_lines.most_common()]
            out += [f"  e.g. {p}:{line}: {reason}" for p, line, reason in self.bad_line_examples]
        if self.dropped_rows:
            out.append(f"rows that cannot be bronze, skipped: {sum(self.dropped_rows.values()):,}")
            out += [f"  {n:,} x {reason}" for reason, n in self.dropped_rows.most_common()]
        if self.unmapped_channels:
            out.append("records of channels bronze has no place for (not imported): "
                       + ", ".join(f"{c} {n:,}" for c, n in sorted(self.unmapped_channels.items())))
        if self.unmapped_fields:
            out.append("fields with no bronze column (rows carrying a value that is not kept):")
            out += [f"  {name}: {n:,}" for name, n in sorted(self.unmapped_fields.items())]
        if self.symbols_restored:
            out.append("sanitised symbols read as: "
                       + ", ".join(f"{a} -> {b}" for a, b in sorted(self.symbols_restored.items())))
        if self.exchanges_renamed:
            out.append("exchanges imported under ccxt.pro's id, as `fluxforge config import-daedalus` collects them: "
                       + ", ".join(f"{a} -> {b}" for a, b in sorted(self.exchanges_renamed.items())))
        out += [f"warning: {w}" for w in self.warnings]
        return out
