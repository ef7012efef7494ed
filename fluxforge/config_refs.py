"""Secret references in the config and masking for display (DESIGN decision 8).

Why apart from config.py: the models say what a valid config is; this module says
where secret values come from (`${env:NAME}`, `${credential:NAME}` read from
`$CREDENTIALS_DIRECTORY`, i.e. systemd's LoadCredential=) and how every secret is
kept out of what is printed or logged.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .logs import redact_url_userinfo

_SECRET_KEY = re.compile(r"(secret|password|passphrase|token|apikey|api_key|privatekey|private_key|access_key|uid|"
                         r"twofa|login|auth|cookie|credential|session|signature)", re.I)
# The packaged units' `LoadCredential=fluxforge:/etc/fluxforge/credentials` names each file so.
CREDENTIAL_PREFIX = "fluxforge_"
_REF = re.compile(r"^\$\{(env|credential):([A-Za-z0-9_.\-]+)\}$")


class UnresolvedReference(ValueError):
    """A `${env:}`/`${credential:}` reference whose value cannot be had (the message names the field)."""


UNRESOLVED = "***unresolved***"  # stands for a secret a read-only command does not need


def resolve_refs(node: Any, path: tuple = (), refs: set[tuple] | None = None,
                 unresolved: list[str] | None = None) -> Any:
    """Replace `${env:X}` / `${credential:X}` strings by their values; add their paths to `refs`.

    With `unresolved` (a list), a reference that cannot be read becomes `UNRESOLVED` and its
    message is appended there instead of raising: commands that only read the data directory
    (`status`, `report`) work by hand, outside the units that load the credentials."""
    if isinstance(node, dict):
        return {k: resolve_refs(v, path + (k,), refs, unresolved) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_refs(v, path + (i,), refs, unresolved) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    m = _REF.match(node)
    if not m:
        return node
    if refs is not None:
        refs.add(path)
    if unresolved is None:
        return _read_ref(path, *m.groups())
    try:
        return _read_ref(path, *m.groups())
    except UnresolvedReference as e:
        unresolved.append(str(e))
        return UNRESOLVED


def _read_ref(path: tuple, kind: str, name: str) -> str:
    where = ".".join(str(p) for p in path)
    if kind == "env":
        if name not in os.environ:
            raise UnresolvedReference(f"{where}: environment variable {name} is not set")
        return os.environ[name]
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if not cred_dir:
        raise UnresolvedReference(f"{where}: credential {name!r} requested but $CREDENTIALS_DIRECTORY is not set "
                                  f"(use LoadCredential=; {credential_hint(name)})")
    try:
        return (Path(cred_dir) / name).read_text().strip()
    except OSError as e:
        raise UnresolvedReference(f"{where}: credential {name!r} cannot be read: {e.strerror} ({credential_hint(name)})") from None
    except UnicodeDecodeError as e:
        raise UnresolvedReference(f"{where}: credential {name!r} is not UTF-8 text (byte {e.object[e.start]:#04x} at "
                                  f"offset {e.start}; {credential_hint(name)})") from None


def credential_hint(name: str) -> str:
    """What a packaged install needs: the file /etc/fluxforge/credentials/F is the credential fluxforge_F."""
    if name.startswith(CREDENTIAL_PREFIX):
        return f"the packaged units load it from /etc/fluxforge/credentials/{name[len(CREDENTIAL_PREFIX):]}"
    return (f"the packaged units name the file /etc/fluxforge/credentials/{name} "
            f"\"${{credential:{CREDENTIAL_PREFIX}{name}}}\"")


def mask_secrets(node: Any, key: str = "", path: tuple = (), secret_paths: frozenset[tuple] = frozenset()) -> Any:
    """Deep copy with secrets replaced by '***': values under secret-looking keys, values at
    `secret_paths` (those that came from ${env:}/${credential:}), and userinfo in URLs."""
    if path in secret_paths and node is not None:
        return "***"
    if isinstance(node, dict):
        return {k: mask_secrets(v, str(k), path + (k,), secret_paths) for k, v in node.items()}
    if isinstance(node, list):
        return [mask_secrets(v, key, path + (i,), secret_paths) for i, v in enumerate(node)]
    if node is not None and key and _SECRET_KEY.search(key):
        return "***"
    return redact_url_userinfo(node) if isinstance(node, str) else node
