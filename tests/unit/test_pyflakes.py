"""pyflakes finds nothing in the repo's Python: no undefined, shadowed or unused name.

Why: a second `trade_table` in tests/reference/synthetic.py shadowed the first, and
`bench/kernels.py` (which `make bench` runs) failed with a TypeError for months while every
test passed -- no test called the shadowed function, only the bench did.  pyflakes reports
that as "redefinition of unused 'trade_table'".  Two deliberate patterns are allowed, as
flake8 would: an import marked `# noqa: F401` (a pytest fixture imported into a test module,
a name re-exported), and a test function's argument that shadows such an imported fixture
(how pytest passes it in).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pyflakes import api, messages, reporter

REPO = Path(__file__).resolve().parents[2]
TREES = ("fluxforge", "tests", "bench", "packaging")


class _Collect(reporter.Reporter):
    def __init__(self):
        self.found: list = []
        self.broken: list[str] = []

    def flake(self, message):
        self.found.append(message)

    def syntaxError(self, filename, msg, lineno, offset, text):  # noqa: N802 (pyflakes' name)
        self.broken.append(f"{filename}:{lineno}: {msg}")

    def unexpectedError(self, filename, msg):  # noqa: N802
        self.broken.append(f"{filename}: {msg}")


def _allowed(message, source: list[str], args: set[tuple[int, int]]) -> bool:
    line = source[message.lineno - 1] if message.lineno <= len(source) else ""
    if isinstance(message, messages.UnusedImport):
        return "noqa" in line and "F401" in line
    if isinstance(message, messages.RedefinedWhileUnused):
        return (message.lineno, message.col) in args  # a fixture passed in as an argument
    return False


def problems(path: Path) -> list[str]:
    """pyflakes' findings in `path` that are not one of the allowed patterns."""
    text = path.read_text()
    collect = _Collect()
    api.check(text, str(path), collect)
    source = text.splitlines()
    args = {(a.lineno, a.col_offset) for a in ast.walk(ast.parse(text)) if isinstance(a, ast.arg)}
    name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return collect.broken + [f"{name}:{m.lineno}: {m.message % m.message_args}"
                             for m in collect.found if not _allowed(m, source, args)]


def test_the_repo_is_clean():
    files = sorted(p for tree in TREES for p in (REPO / tree).rglob("*.py") if "__pycache__" not in p.parts)
    assert len(files) > 300, len(files)
    found = [line for path in files for line in problems(path)]
    assert not found, "pyflakes:\n" + "\n".join(found)


@pytest.mark.parametrize("code, expect", [
    ("def f(x):\n    return 1\n\n\ndef f(y):\n    return 2\n", "redefinition of unused 'f'"),
    ("def f():\n    return nope\n", "undefined name 'nope'"),
    ("import os\n", "'os' imported but unused"),
    ("import os  # noqa: E402\n", "'os' imported but unused"),
])
def test_what_it_refuses(tmp_path, code, expect):
    path = tmp_path / "probe.py"
    path.write_text(code)
    assert any(expect in p for p in problems(path)), problems(path)


@pytest.mark.parametrize("code", [
    "from os import path  # noqa: F401  (re-exported)\n",
    "from os import sep  # noqa: E402,F401\n\n\ndef test_x(sep):\n    assert sep\n",
])
def test_what_it_allows(tmp_path, code):
    path = tmp_path / "probe.py"
    path.write_text(code)
    assert problems(path) == []
