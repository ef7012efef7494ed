"""structlog set-up: journald fields under systemd, readable console on a TTY, JSON otherwise.

Why our own journald sender: the native journal protocol is a datagram of
`KEY=value` lines on /run/systemd/journal/socket; speaking it directly keeps
structured fields (`journalctl -u fluxforge-collector EVENT=segment_rotated`)
without a compiled libsystemd binding on the Pi.  Every event dict key becomes an
upper-case journal field; `event` becomes EVENT and the readable MESSAGE.
Whatever the format, `user:password@` in any URL of a log line is masked first
(an `endpoint_url` or a ccxt URL may carry credentials).
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import struct
import sys
from typing import Any

import structlog

JOURNAL_SOCKET = "/run/systemd/journal/socket"
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@?#]+@")
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2, "exception": 3}


def redact_url_userinfo(text: str) -> str:
    """`https://user:pw@host/x` -> `https://***@host/x` (anywhere in `text`)."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text) if "@" in text else text


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url_userinfo(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    if isinstance(value, (int, float, bool, type(None))):
        return value
    text = str(value)  # e.g. an exception or a Path: rendered through str() anyway
    clean = redact_url_userinfo(text)
    return value if clean == text else clean


def redact_userinfo_processor(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: no URL userinfo reaches any renderer."""
    return {k: _redact(v) for k, v in event_dict.items()}


def under_journald() -> bool:
    """True when stderr is connected to journald (systemd sets $JOURNAL_STREAM=dev:ino)."""
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _journal_field_name(key: str) -> str:
    name = "".join(c if c.isalnum() else "_" for c in key.upper()).lstrip("_")
    return name or "FIELD"


def _encode_field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" in data:
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


class JournaldRenderer:
    """Final structlog processor: sends the event to journald, returns '' for the std logger."""

    def __init__(self, identifier: str, path: str = JOURNAL_SOCKET):
        self.identifier = identifier
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> str:
        event = str(event_dict.pop("event", ""))
        level = str(event_dict.pop("level", method))
        event_dict.pop("timestamp", None)
        extras = " ".join(f"{k}={v}" for k, v in event_dict.items() if k != "exception")
        message = f"{event} {extras}".strip()
        if "exception" in event_dict:
            message += "\n" + str(event_dict["exception"])
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(_PRIORITY.get(level, 6)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "EVENT": event,
        }
        for k, v in event_dict.items():
            fields.setdefault(_journal_field_name(k), v if isinstance(v, str) else json.dumps(v, default=str))
        payload = b"".join(_encode_field(k, str(v)) for k, v in fields.items())
        try:
            self.sock.sendto(payload, self.path)
        except OSError:
            # Journal unavailable or datagram too large: fall back to stderr, never lose the line.
            print(message, file=sys.stderr, flush=True)
        raise structlog.DropEvent


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is *now*: binding the stream object at configure time
    breaks every later log line once that stream is closed (pytest captures, redirections)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", fmt: str = "auto", identifier: str = "fluxforge") -> None:
    """Configure structlog once per process.  fmt: auto|console|json|journald."""
    if fmt == "auto":
        if under_journald():
            fmt = "journald"
        elif sys.stderr.isatty():
            fmt = "console"
        else:
            fmt = "json"
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        redact_userinfo_processor,
    ]
    if fmt == "journald":
        renderer: Any = JournaldRenderer(identifier)
        processors = shared + [renderer]
    elif fmt == "console":
        processors = shared + [structlog.processors.TimeStamper(fmt="%H:%M:%S"), structlog.dev.ConsoleRenderer()]
    else:
        processors = shared + [structlog.processors.TimeStamper(fmt="iso", utc=True),
                               structlog.processors.JSONRenderer(default=str)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **initial: Any) -> structlog.typing.FilteringBoundLogger:
    log = structlog.get_logger(name)
    return log.bind(**initial) if initial else log
