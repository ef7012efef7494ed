"""What a config translation produced: the new config, where each value came from, what did not carry over.

Why apart from any one source system: a translator is a list of rules (old key -> new key,
value converted), and every rule must leave a trace an operator can check: the new value and
its old key (`mapped`), a warning saying what to do instead for an old key that has no
equivalent (`warn`), and for a secret a `${credential:...}` reference plus where its file goes
(`credential`). The rendered YAML carries all three as comments; warnings also go to stderr.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ..config_refs import CREDENTIAL_PREFIX

CREDENTIALS_DIR = "/etc/fluxforge/credentials"


@dataclass
class Credential:
    old_key: str       # where the secret sat in the old file
    name: str          # the systemd credential name, fluxforge_<file>
    new_path: str      # where the reference sits in the new config

    @property
    def file(self) -> str:
        return f"{CREDENTIALS_DIR}/{self.name[len(CREDENTIAL_PREFIX):]}"

    @property
    def reference(self) -> str:
        return "${credential:" + self.name + "}"


@dataclass
class Translation:
    """The new config as plain data plus its provenance; filled by a translator's rules."""

    config: dict[str, Any] = field(default_factory=dict)
    mapped: list[tuple[str, str, str]] = field(default_factory=list)   # (old key, new path, note)
    warnings: list[tuple[str, str]] = field(default_factory=list)      # (old key, what to do instead)
    credentials: list[Credential] = field(default_factory=list)

    def set(self, path: str, value: Any, old_key: str, note: str = "") -> None:
        """Put `value` at the dotted mapping `path` and record where it came from."""
        node: Any = self.config
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        self.record(old_key, path, note)

    def record(self, old_key: str, new_path: str, note: str = "") -> None:
        """Record a value placed by hand (e.g. inside an `exchanges` list entry)."""
        self.mapped.append((old_key, new_path, note))

    def get(self, path: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def warn(self, old_key: str, message: str) -> None:
        self.warnings.append((old_key, message))

    def credential(self, old_key: str, file_stem: str, new_path: str) -> str:
        """A `${credential:fluxforge_<file_stem>}` reference for the secret at `old_key`."""
        cred = Credential(old_key, CREDENTIAL_PREFIX + file_stem, new_path)
        self.credentials.append(cred)
        self.record(old_key, new_path, f"secret -> {cred.reference}")
        return cred.reference

    def warning_lines(self) -> list[str]:
        return [f"{key}: {message}" for key, message in self.warnings]

    def credential_lines(self) -> list[str]:
        return [f"put the value of {c.old_key} (from the old file) into {c.file} (root only, mode 0600); "
                f"the config reads it as {c.reference}" for c in self.credentials]


class _Dumper(yaml.SafeDumper):
    """Lists of plain values (symbols, channels, horizons) on one line, everything else as blocks."""

    def represent_list(self, data):  # noqa: D102 (PyYAML's hook)
        flat = all(isinstance(v, (str, int, float, bool)) for v in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _Dumper.represent_list)


def mapping_at(data: Any, *keys: str) -> dict[str, Any]:
    """The mapping at data[k1][k2]...; {} where a level is missing or not a mapping."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def render(tr: Translation, source: str, system: str) -> str:
    """The config as YAML with its provenance, credential instructions and warnings as comments."""
    head = [f"# FluxForge config translated from {system} config {source}",
            "# by `fluxforge config import-daedalus`; validate it with `fluxforge config check --config FILE`.",
            "# Every option not set here has its FluxForge default (config/config.example.yaml lists them)."]
    if tr.credentials:
        head += ["#", "# Credentials: the old file held these secrets in clear. FluxForge reads them from systemd",
                 f"# credentials: write each value to its file under {CREDENTIALS_DIR} (root only), e.g.",
                 f"#   sudo install -d -m 0700 {CREDENTIALS_DIR}",
                 f"#   sudo sh -c 'umask 077; cat > {CREDENTIALS_DIR}/FILE'   # paste the value, then Ctrl-D"]
        head += [f"#   {c.old_key} -> {c.file}" for c in tr.credentials]
    if tr.mapped:
        head += ["#", "# Translated (old key -> new key):"]
        head += [f"#   {old} -> {new}" + (f"  ({note})" if note else "") for old, new, note in tr.mapped]
    if tr.warnings:
        head += ["#", "# Not translated (no FluxForge equivalent; also printed on stderr):"]
        head += [f"#   {line}" for line in tr.warning_lines()]
    body = yaml.dump(tr.config, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    lines = body.splitlines()
    for cred in tr.credentials:  # the instruction again beside the reference itself
        for i, line in enumerate(lines):
            if cred.reference in line and "#" not in line:
                lines[i] = f"{line}  # file {cred.file}: the value of {cred.old_key}"
                break
    return "\n".join(head) + "\n\n" + "\n".join(lines) + "\n"
