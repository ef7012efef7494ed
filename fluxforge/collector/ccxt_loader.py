"""Load only the ccxt.pro exchange classes the config names.

Why: `import ccxt.pro` executes ccxt's package `__init__` files, which import
every exchange ccxt supports, three times over (sync, async, pro): ~110 MB of
RSS before the first message, most of a Raspberry Pi's budget for the whole
collector.  The collector process needs two or three exchange classes.  So, in
its own process, `lean_exchange_classes()` registers the three ccxt packages as
bare namespace modules (their `__init__` not executed), gives them the names
ccxt's own modules import from them (errors, `Exchange`, `Precise`), and then
imports only `ccxt.async_support.<id>` and `ccxt.pro.<id>`: ~55 MB instead of
~110 MB.  The classes are the unmodified ccxt ones.

Anything unexpected (a future ccxt layout) falls back to the plain full import,
and when ccxt is already imported (tests, other tools in one process) it is used
as is.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

from ..logs import get_logger

log = get_logger("fluxforge.collector.ccxt_loader")


def ccxt_root() -> Path:
    spec = importlib.util.find_spec("ccxt")  # does not execute the package
    if spec is None or spec.origin is None:
        raise ImportError("ccxt is not installed")
    return Path(spec.origin).parent


def is_pro_exchange(exchange_id: str) -> bool:
    """True if ccxt.pro has this exchange id, without importing ccxt."""
    return exchange_id.isidentifier() and (ccxt_root() / "pro" / f"{exchange_id}.py").is_file()


def _namespace(name: str, path: Path) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)]  # type: ignore[attr-defined]
    mod.__package__ = name
    sys.modules[name] = mod
    return mod


def _lean(exchange_ids: list[str]) -> dict[str, type]:
    root = ccxt_root()
    ccxt = _namespace("ccxt", root)
    errors = importlib.import_module("ccxt.base.errors")
    for name in dir(errors):
        if not name.startswith("_"):
            setattr(ccxt, name, getattr(errors, name))
    ccxt.Exchange = importlib.import_module("ccxt.base.exchange").Exchange
    ccxt.Precise = importlib.import_module("ccxt.base.precise").Precise
    async_support = _namespace("ccxt.async_support", root / "async_support")
    ccxt.async_support = async_support
    async_support.Exchange = importlib.import_module("ccxt.async_support.base.exchange").Exchange
    pro = _namespace("ccxt.pro", root / "pro")
    ccxt.pro = pro
    pro.Exchange = async_support.Exchange
    classes = {}
    for ex in exchange_ids:
        setattr(async_support, ex, getattr(importlib.import_module(f"ccxt.async_support.{ex}"), ex))
        classes[ex] = getattr(importlib.import_module(f"ccxt.pro.{ex}"), ex)
        setattr(pro, ex, classes[ex])
    return classes


def _forget_ccxt() -> None:
    for name in [n for n in sys.modules if n == "ccxt" or n.startswith("ccxt.")]:
        del sys.modules[name]


def exchange_classes(exchange_ids: list[str], lean: bool = False) -> dict[str, type]:
    """ccxt.pro classes by id; `lean=True` (a dedicated collector process) imports only those."""
    if lean and "ccxt" not in sys.modules:
        try:
            return _lean(exchange_ids)
        except Exception as e:  # an unexpected ccxt layout: use the normal import
            log.warning("ccxt_lean_import_failed", error=f"{type(e).__name__}: {e}")
            _forget_ccxt()
    import ccxt.pro

    return {ex: getattr(ccxt.pro, ex) for ex in exchange_ids}
