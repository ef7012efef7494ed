"""The record of which old files an import already turned into segments (`state/import-daedalus.json`).

Why a ledger and not deterministic segment names: a segment's name holds its host
sequence number, handed out by the data directory, and an imported segment moves on
(ready/ -> done/ -> deleted by retention), so the segments themselves cannot say what
was imported.  Files are known by the sha256 of their content, so a second run over
the same SRC (or a copy of it elsewhere) imports nothing twice.

Crash safety: segments are built in a staging store first; then the ledger records
them as `pending` (one atomic write), then they are renamed into ready/, then the
ledger moves their files from `pending` to `files`.  A run that finds `pending`
finishes those renames first; one that finds staged segments without `pending`
knows they were never announced and deletes them.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..fsio import atomic_write_json

LEDGER = "import-daedalus.json"


class ImportLedger:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.files: dict[str, dict] = {}     # sha256 -> {path, host, rows, segments}
        self.pending: dict | None = None      # {"files": {sha256: {...}}, "segments": [names]}
        self.hosts: dict[str, int] = {}       # host -> latest hour (since the epoch) imported

    @classmethod
    def load(cls, state_dir: Path) -> "ImportLedger":
        """The ledger in `state_dir` (empty if there is none).

        Raises ValueError when the file is not a ledger: deciding what was imported from a
        damaged record could duplicate or skip data, so the operator decides."""
        ledger = cls(Path(state_dir) / LEDGER)
        if ledger.path.exists():
            try:
                doc = json.loads(ledger.path.read_text())
                ledger.files = dict(doc["files"])
                ledger.pending = doc.get("pending")
                ledger.hosts = dict(doc.get("hosts", {}))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{ledger.path}: not a readable import ledger ({e}); move it away to "
                                 "import again (files imported before would then be imported twice)") from None
        return ledger

    def save(self) -> None:
        atomic_write_json(self.path, {"version": 1, "files": self.files, "pending": self.pending,
                                      "hosts": self.hosts})

    def announce(self, files: dict[str, dict], segments: list[str], host: str, last_hour: int | None) -> None:
        """Record staged segments (and the files they hold) before they move into ready/."""
        self.pending = {"files": files, "segments": segments, "host": host, "last_hour": last_hour}
        self.save()

    def commit(self) -> None:
        """The pending segments are all in ready/: their files count as imported from now on."""
        if self.pending:
            self.files.update(self.pending["files"])
            host, hour = self.pending.get("host"), self.pending.get("last_hour")
            if host is not None and hour is not None:
                self.hosts[host] = max(hour, self.hosts.get(host, hour))
        self.pending = None
        self.save()
