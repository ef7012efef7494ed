"""`etl.live`: where the live-feature endpoint listens and how much it keeps.

Why apart from config.py: the model carries its own rules (a wide bind needs a
token) and the socket-path resolution both sides share -- the ETL binding the
socket and `fluxforge live` / `fluxforge.live.subscribe()` finding it -- so the
two can never disagree on where the socket is.

The Unix socket is the default endpoint: systemd's `RuntimeDirectory=fluxforge`
gives the ETL `/run/fluxforge` (0750, group fluxforge; `$RUNTIME_DIRECTORY`),
and without it (a hand-run ETL, a test, the demo) the socket goes under the
data_dir's state/ directory -- never a shared /run path two ETLs could fight over.  The WebSocket is off unless `port` is set, and
binds 127.0.0.1; any other address needs `token`.
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SOCKET_NAME = "live.sock"
RUN_DIR = Path("/run/fluxforge")
HOUR = 3600.0


class LiveConfig(BaseModel):
    """Live features served by the ETL (docs/live.md)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    enabled: bool = Field(False, description="compute live rows from the active segment and serve them; off by "
                          "default: it costs several times the ETL's CPU (docs/live.md)")
    poll_interval: float = Field(0.1, gt=0.0, le=60.0, description="seconds between looks at the active journals where "
                                 "inotify cannot announce the collector's flushes (docs/live.md)")
    socket: Path | None = Field(None, description="Unix socket; default $RUNTIME_DIRECTORY/live.sock "
                                "(/run/fluxforge/live.sock under systemd), else <data_dir>/state/live.sock")
    listen: str = Field("127.0.0.1", description="address of the optional WebSocket; anything but "
                        "loopback requires `token`")
    port: int | None = Field(None, ge=0, le=65535, description="WebSocket port; unset: no WebSocket; 0: any free port")
    token: str | None = Field(None, description='shared secret for WebSocket clients, e.g. '
                              '"${credential:fluxforge_live_token}"; required for a non-loopback listen')
    buffer_rows: int = Field(20_000, ge=10, le=10_000_000,
                             description="rows queued per subscriber; beyond, the subscriber is dropped (slow)")
    buffer_mb: float = Field(64.0, gt=0.0, le=65536.0, description="memory of the rows queued per subscriber "
                             "(estimated: ~80 kB per chunk of one hf row); beyond, the subscriber is dropped (slow)")
    send_timeout: float = Field(30.0, gt=0.0, le=HOUR, description="seconds a subscriber may leave sent data "
                                "unread before it is dropped (stalled)")
    replay_minutes: float = Field(15.0, ge=0.0, le=24 * 60.0,
                                  description="exchange-time minutes of recent rows kept per product and symbol")
    replay_rows: int = Field(1000, ge=0, le=1_000_000, description="at most this many recent rows per product "
                             "and symbol")
    replay_mb: float = Field(64.0, gt=0.0, le=65536.0, description="memory of the recent rows, all products and "
                             "symbols together (estimated: 8 bytes a value, ~1.4 kB an hf row); beyond, the "
                             "oldest go first")
    max_subscribers: int = Field(64, ge=1, le=10_000)

    @field_validator("listen")
    @classmethod
    def _address(cls, v: str) -> str:
        return ip_address_text(v)

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and len(v) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 16`)")
        return v

    @model_validator(mode="after")
    def _wide_bind_needs_token(self) -> "LiveConfig":
        if self.port is not None and not is_loopback(self.listen) and not self.token:
            raise ValueError(f"listen {self.listen!r} is not a loopback address: a WebSocket reachable from other "
                             f"hosts requires etl.live.token (e.g. \"${{credential:fluxforge_live_token}}\")")
        return self


def ip_address_text(v: str) -> str:
    """A listen address as bind() takes it (IPv6 without brackets), or a clear error; also
    `metrics.listen`'s check (config.py imports this module, never the other way round)."""
    try:
        ipaddress.ip_address(v.strip("[]"))
    except ValueError:
        raise ValueError(f"{v!r} is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)") from None
    return v.strip("[]")


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def server_socket_path(live: LiveConfig, state_dir: Path) -> Path:
    """Where the ETL binds: the configured path, else systemd's runtime directory
    ($RUNTIME_DIRECTORY, set by the unit's RuntimeDirectory=), else state/."""
    if live.socket is not None:
        return Path(live.socket)
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / SOCKET_NAME
    return Path(state_dir) / SOCKET_NAME


def client_socket_path(live: LiveConfig, state_dir: Path) -> Path:
    """Where a subscriber connects: the configured path, else the first existing default (an ETL run
    by hand on this data_dir, then the packaged service's)."""
    if live.socket is not None:
        return Path(live.socket)
    for candidate in (Path(state_dir) / SOCKET_NAME, RUN_DIR / SOCKET_NAME):
        if candidate.exists():
            return candidate
    return RUN_DIR / SOCKET_NAME
