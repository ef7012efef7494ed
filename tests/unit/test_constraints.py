"""constraints.txt pins every Python package FluxForge installs, and `make test` runs on exactly those.

Why: the venv `make test` builds and the .deb's venv (tests/appliance/test_4_package.py checks
that one) must be the set that was tested, not whatever PyPI holds on the day of the build.
"""
from __future__ import annotations

import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
import lock_deps  # noqa: E402

def declared() -> list[Requirement]:
    """Every requirement pyproject.toml states: dependencies, each extra, the build's."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = list(project["project"]["dependencies"]) + list(project["build-system"]["requires"])
    for extra in project["project"]["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_declared_requirement_is_pinned_within_its_range():
    pins = lock_deps.read_pins()
    for req in declared():
        name = lock_deps.canonical(req.name)
        assert name in pins, f"{req} is not pinned: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {req}: run `make lock`"
    for tool in lock_deps.TOOLS:
        assert lock_deps.canonical(tool) in pins, f"{tool} (the venv's installer) is not pinned"


def test_pins_are_for_the_python_the_package_runs_on():
    head = (REPO / "constraints.txt").read_text().splitlines()[:3]
    assert any("for Python 3.11" in line for line in head), head  # Debian bookworm's python3


@pytest.mark.parametrize("text, problem", [("ccxt>=4.3\n", "not an exact pin"),
                                           ("ccxt==4.5.90\nCCXT==4.5.91\n", "pinned twice")])
def test_a_loose_or_repeated_pin_is_refused(tmp_path, text, problem):
    path = tmp_path / "constraints.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        lock_deps.read_pins(path)


def test_this_venv_holds_the_pinned_versions():
    """`make test` installed the pins (the Makefile passes constraints.txt to pip): every pinned
    package present here is at its pinned version, and every runtime dependency is present."""
    pins = lock_deps.read_pins()
    wrong = {}
    for name, version in pins.items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra this run did not install (bench, appliance)
        if have != version:
            wrong[name] = f"{have}, pinned {version}"
    assert not wrong, f"installed versions differ from constraints.txt (`touch constraints.txt && make venv` reinstalls the pins): {wrong}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for req in map(Requirement, project["dependencies"] + project["optional-dependencies"]["test"]):
        assert importlib.metadata.version(req.name) == pins[lock_deps.canonical(req.name)]


def test_render_writes_sorted_exact_pins_the_reader_takes_back():
    text = lock_deps.render({"PyYAML": "6.0.3", "aiohttp": "3.14.5", "Cython": "3.3.1"}, "3.11")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["aiohttp==3.14.5", "Cython==3.3.1", "PyYAML==6.0.3"]
    assert "for Python 3.11" in text
