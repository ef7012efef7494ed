"""The repo's systemd unit files as data, for tests that check what a unit sets."""
from __future__ import annotations

from pathlib import Path

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"


def unit_file(name: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value (systemd keys may repeat), of systemd/<name>."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in (SYSTEMD / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections
