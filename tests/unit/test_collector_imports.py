"""What the collector process imports: only what it uses (its RSS budget on a Pi, bench/collector.py
--only rss).  Each check runs a fresh interpreter, as the service does."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings, strategies as st

from fluxforge.bronze.finish import int64_min_max

HAVE_PANDAS = importlib.util.find_spec("pandas") is not None


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_building_the_command_line_imports_no_data_library():
    """`fluxforge --help`, and every command before its handler runs (the collector too), stays
    free of pyarrow, numpy, pandas and ccxt: `report` used to pull in the whole feature engine."""
    mods = _modules_after("from fluxforge.cli import build_parser; build_parser()")
    heavy = {m.partition(".")[0] for m in mods} & {"pyarrow", "numpy", "pandas", "ccxt", "matplotlib"}
    assert not heavy


@pytest.mark.skipif(not HAVE_PANDAS, reason="pandas is not installed: nothing to refuse")
@pytest.mark.parametrize("refused", [False, True])
def test_refusing_numpy_and_pandas_keeps_them_out_of_pyarrow(refused):
    code = ("from fluxforge.collector import unused_modules\nimport sys\n"
            "assert unused_modules.refuse() == ('numpy', 'pandas')\n"
            "finders = len(sys.meta_path)\n"
            "assert unused_modules.refuse() == () and len(sys.meta_path) == finders\n" if refused else "")
    code += ("import pyarrow as pa, pyarrow.parquet, pyarrow.ipc\n"
             "assert pa.array([1.5, None]).to_pylist() == [1.5, None]\n")
    if refused:
        code += ("try:\n    import pandas\nexcept ModuleNotFoundError as e:\n"
                 "    assert 'not used by the collector' in str(e)\nelse:\n    raise AssertionError('imported')\n")
    mods = _modules_after(code)
    # the control: pyarrow does import both when it can
    assert ("pandas" in mods) is not refused and ("numpy" in mods) is not refused


@pytest.mark.skipif(not HAVE_PANDAS, reason="pandas is not installed")
def test_refuse_is_a_no_op_once_they_are_imported():
    _modules_after("import pandas\nfrom fluxforge.collector import unused_modules\n"
                   "assert unused_modules.refuse() == ()\nimport pandas.api")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), max_size=40), st.data())
def test_int64_min_max_equals_arrow_compute(values, data):
    arr = pa.array(values, pa.int64())
    start = data.draw(st.integers(0, len(values)))
    arr = arr.slice(start, data.draw(st.integers(0, len(values) - start)))
    mm = pc.min_max(arr)
    assert int64_min_max(arr) == (mm["min"].as_py(), mm["max"].as_py())
