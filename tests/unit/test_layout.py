"""The package tree shows the pipeline: stage packages, no import cycles, small modules.

Guards the layout (docs/architecture.md opens with it): a cycle between two modules
(even one hidden behind TYPE_CHECKING) or a module grown past ~400 lines fails here
instead of in a later review.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "fluxforge"
MAX_LINES = 400
STAGES = ("collector", "bronze", "etl", "features", "maintenance", "sync", "observe", "loopback", "demo",
          "commands")
SHARED = {"__init__", "__main__", "cli", "config", "config_refs", "config_base", "config_exchange", "logs", "fsio", "libc", "locks", "service", "service_child", "progress"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `name` imports at module level (TYPE_CHECKING blocks included)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If):           # TYPE_CHECKING and other module-level conditionals
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for a in node.names:
                    if f"{mod}.{a.name}" in known:
                        found.add(f"{mod}.{a.name}")
                    elif mod in known:
                        found.add(mod)

    visit(ast.parse(path.read_text()).body)
    found.discard(name)
    return found


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(m, p, set(mods)) for m, p in mods.items()}
    # a package's __init__ importing its own submodules (a re-export) is not a cycle
    for m in graph:
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                dfs(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)


def test_modules_stay_small():
    big = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by job): {big}"


def test_top_level_holds_only_shared_infrastructure():
    top = {p.stem for p in PKG.glob("*.py")}
    assert top <= SHARED, f"move these into a stage package: {sorted(top - SHARED)}"
    for stage in STAGES:
        assert (PKG / stage / "__init__.py").is_file(), stage


def test_every_module_says_why():
    missing = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py")
               if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, f"modules without a docstring: {missing}"


def test_every_package_is_listed_for_the_wheel_and_the_deb():
    """pyproject lists packages explicitly: one left out is missing from the .deb's venv (the .deb
    build's own import check catches it, but only in the appliance suite, minutes later)."""
    import tomllib

    listed = set(tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PKG.parent).parts) for p in PKG.rglob("__init__.py")}
    assert found - listed == set(), "add to [tool.setuptools] packages in pyproject.toml"
