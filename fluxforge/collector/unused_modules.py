"""Keep numpy and pandas out of the collector process.

Why: pyarrow imports numpy when it is importable (always: the feature kernels need it), and
pandas, when importable, the first time it builds an array (pyarrow's pandas-shim.pxi, to
recognise pandas inputs): ~16 and ~30 MB of RSS, a third of the collector's budget on a Pi,
for libraries it does not call -- its level values go from Python lists straight into Arrow
(collector/rows.py).  The .deb's venv has no pandas, but a host where fluxforge shares an
environment with notebooks has.  `refuse()`, called before pyarrow is imported, makes
importing them fail in this process only, so pyarrow takes its paths without them (pyarrow
>= 16 needs neither).
"""
from __future__ import annotations

import sys

UNUSED = ("numpy", "pandas")


class _Refuse:
    """A meta-path finder that answers "not installed" for the packages in `names`.

    (Not `sys.modules[name] = None`: Cython's import, which pyarrow uses, returns that None
    instead of raising ImportError.)"""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{name} is not used by the collector (fluxforge.collector.unused_modules)",
                                      name=name)
        return None


def refuse() -> tuple[str, ...]:
    """Refuse, from now on in this process, the UNUSED packages not imported yet (refusing one
    already imported would save nothing and could break its users); returns those newly refused
    (a second call adds no finder for packages the first one refused)."""
    refused = {n for f in sys.meta_path if isinstance(f, _Refuse) for n in f.names}
    names = tuple(name for name in UNUSED if name not in sys.modules and name not in refused)
    if names:
        sys.meta_path.insert(0, _Refuse(names))
    return names
