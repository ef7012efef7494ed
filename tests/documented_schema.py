"""The feature schemas as docs/schemas.md documents them, for tests that check written files.

Why a parser: a "documented schema" check that compares files with the engine's own
column list proves nothing about the docs.  This reads the `hf` and `bars` tables of
docs/schemas.md, expands their name templates (`{i}` levels, `{h}` horizons, `{a}_{b}`
bands, `name_…` = the previous entry's template) with the feature options, and returns
column name -> Arrow type.
"""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

SCHEMAS_MD = Path(__file__).resolve().parents[1] / "docs" / "schemas.md"
TYPES = {"float64": pa.float64(), "int64": pa.int64(), "int32": pa.int32(), "bool": pa.bool_(),
         "string": pa.string(), "timestamp[ms, tz=UTC]": pa.timestamp("ms", tz="UTC")}


def _table_rows(section: str) -> list[tuple[str, str]]:
    """(names cell, type cell) of the first Markdown table after the heading `section`."""
    lines = SCHEMAS_MD.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### ") and section in line)
    rows, seen_table = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen_table = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] in ("column", "columns") or set(cells[0]) <= set("-: "):
                continue
            rows.append((cells[0], cells[1]))
        elif seen_table or line.startswith("#"):
            break
    assert rows, f"no table under {section!r} in {SCHEMAS_MD}"
    return rows


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _expand(name: str, options) -> list[str]:
    if "{i}" in name:
        return [name.replace("{i}", str(i)) for i in range(options.max_levels)]
    if "{h}" in name:
        return [name.replace("{h}", _num(h)) for h in options.horizons]
    if "{a}_{b}" in name:
        edges = [0.0, *options.bands_bps]
        return [name.replace("{a}_{b}", f"{_num(a)}_{_num(b)}") for a, b in zip(edges, edges[1:])]
    return [name]


def documented_columns(section: str, options) -> dict[str, pa.DataType]:
    """Column name -> type of the table `section` ("`hf`" or "`bars`") as docs/schemas.md lists it."""
    out: dict[str, pa.DataType] = {}
    for names, type_cell in _table_rows(section):
        dtype = TYPES[type_cell]
        previous = ""
        for raw in names.split(","):
            name = raw.strip().strip("`")
            if name.endswith("…"):  # `ask_vol_band_…`: same template as the previous name
                name = name[:-1] + previous[previous.index("{"):]
            previous = name
            assert re.fullmatch(r"[A-Za-z0-9_{}]+", name), f"unparsed column name {name!r} in {SCHEMAS_MD}"
            for col in _expand(name, options):
                out[col] = dtype
    return out


def assert_documented(schema: pa.Schema, section: str, options, partitions=()) -> None:
    """`schema` has exactly the documented columns (plus partition columns), with the documented types."""
    documented = documented_columns(section, options)
    actual = {f.name: f.type for f in schema if f.name not in partitions}
    assert set(actual) == set(documented), (
        f"undocumented: {sorted(set(actual) - set(documented))}; missing: {sorted(set(documented) - set(actual))}")
    wrong = {n: (str(actual[n]), str(t)) for n, t in documented.items() if not actual[n].equals(t)}
    assert not wrong, f"types differ from docs/schemas.md (actual, documented): {wrong}"
