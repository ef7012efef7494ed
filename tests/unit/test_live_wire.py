"""JSON rows (live/wire.py `json_rows`) against the wire format's definition, on random tables.

The definition (docs/live.md, Protocol): a row is the JSON object of the row's `to_pylist()`
dict after type, product and replay -- timestamps and dates as integers in their unit, NaN and
infinities as "NaN"/"Infinity"/"-Infinity" (nested values too), binary as base64, decimals as
strings, a repeated column name once (a dict's: its first place, its last value).  The encoder
reads columns by a plan made once per schema; tables of many schemas, interleaved and more than
it keeps, must each get their own.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import random

import pyarrow as pa

from fluxforge.live import wire

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _expected_value(v, typ: pa.DataType):
    if v is None:
        return None
    if isinstance(v, float):
        return "NaN" if v != v else "Infinity" if v == math.inf else "-Infinity" if v == -math.inf else v
    if isinstance(v, list):
        return [_expected_value(x, typ.value_type) for x in v]
    if isinstance(v, datetime.datetime):
        return (v - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(v, datetime.date):
        return (v - EPOCH.date()).days
    if isinstance(v, bytes):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, decimal.Decimal):
        return str(v)
    return v


def _expected(product: str, table: pa.Table, replay: bool) -> list[dict]:
    out = []
    for i in range(table.num_rows):
        row = {"type": "row", "product": product, "replay": replay}
        for name, col in zip(table.column_names, table.columns):
            row[name] = _expected_value(col[i].as_py(), col.type)
        out.append(row)
    return out


def _value(rng: random.Random, kind: str):
    if rng.random() < 0.15:
        return None
    if kind == "f":
        return rng.choice([math.nan, math.inf, -math.inf, 1e308, 0.1, -2.5, rng.random()])
    return {"i": lambda: rng.choice([1, -2 ** 62]), "b": lambda: rng.random() < 0.5,
            "s": lambda: rng.choice(["a,b", 'ü"\n', "", "BTC/USDT"]),
            "ts": lambda: EPOCH + datetime.timedelta(milliseconds=rng.randrange(2 ** 41)),
            "d": lambda: datetime.date(2024, 1, 2) + datetime.timedelta(days=rng.randrange(400)),
            "l": lambda: [rng.choice([1.0, math.nan, -math.inf]) for _ in range(rng.randrange(3))],
            "bin": lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(4))),
            "dec": lambda: decimal.Decimal(rng.randrange(-9999, 9999)) / 100}[kind]()


TYPES = {"f": pa.float64(), "i": pa.int64(), "b": pa.bool_(), "s": pa.string(), "ts": pa.timestamp("ms", tz="UTC"),
         "d": pa.date32(), "l": pa.list_(pa.float64()), "bin": pa.binary(), "dec": pa.decimal128(6, 2)}


def test_json_rows_are_the_rows_dicts_as_the_wire_format_defines_them():
    rng = random.Random(7)
    for it in range(400):  # schemas come and go: more of them than the encoder keeps plans of
        kinds = [rng.choice(list(TYPES)) for _ in range(rng.randrange(0, 8))]
        names = [f"c{rng.randrange(6)}" for _ in kinds]  # names repeat now and then
        n = rng.randrange(0, 5)
        if rng.random() < 0.2:  # an all-finite float column whose sum overflows
            kinds, names = kinds + ["big"], names + ["big"]
        arrays = [pa.array([1e308] * n, pa.float64()) if k == "big" else
                  pa.array([_value(rng, k) for _ in range(n)], TYPES[k]) for k in kinds]
        table = pa.Table.from_arrays(arrays, names=names) if arrays else pa.table({}).slice(0, 0)
        replay = rng.random() < 0.5
        lines = [head for head, payload in wire.json_rows("hf", table, replay) if payload is None]
        want = _expected("hf", table, replay) if kinds else []
        assert [json.loads(line) for line in lines] == want, (kinds, names)
