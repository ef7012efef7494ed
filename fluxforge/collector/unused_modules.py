"""Keep pandas out of the collector process.

Why: pyarrow imports pandas, whenever pandas is importable, the first time it builds an
array (pyarrow's pandas-shim.pxi, to recognise pandas inputs): ~30 MB of RSS, a fifth of
the collector's budget on a Pi, for a library the collector never calls.  The .deb's venv
has no pandas, but a host where fluxforge shares an environment with notebooks has.
`refuse()`, called before anything builds an array, makes `import pandas` fail in this
process only, so pyarrow takes its no-pandas path there too.
"""
from __future__ import annotations

import sys

UNUSED = ("pandas",)


class _Refuse:
    """A meta-path finder that answers "not installed" for the UNUSED packages.

    (Not `sys.modules[name] = None`: Cython's import, which pyarrow's shim uses, returns that
    None instead of raising ImportError.)"""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in UNUSED:
            raise ModuleNotFoundError(f"{name} is not used by the collector (fluxforge.collector.unused_modules)",
                                      name=name)
        return None


def refuse() -> bool:
    """Refuse the UNUSED packages from now on in this process; False if one is already imported
    (then refusing would save nothing and could break its users)."""
    if any(name in sys.modules for name in UNUSED):
        return False
    if not any(isinstance(f, _Refuse) for f in sys.meta_path):
        sys.meta_path.insert(0, _Refuse())
    return True
