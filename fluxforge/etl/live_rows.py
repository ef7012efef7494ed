"""Feature rows as live subscribers get them: the parts' columns with exchange and symbol in front.

Why a module: the live path publishes the rows of every chunk (`live_tables`, all symbols of a
product given their two columns at once), of a segment the segment job wrote (`unpublished`) and,
after a restart, of the parts already landed (`landed_parts`) -- one shape for all three, the
shape `fluxforge.live` serves (docs/live.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..features import table_blocks
from ..features.pending_tables import slices
from .bronze_reader import Key
from .engines import FeatureOutput
from .hive_writer import prepare_table
from .naming import exchange_from_path_value, part_name, symbol_from_path_value
from .segment_feed import Product, products


@dataclass
class Publication:
    product: Product
    table: pa.Table
    replay: bool = False


def landed_parts(features: Path, segment: str) -> list[tuple[Product, Key, pa.Table]]:
    """The feature parts one segment wrote, as (product, (exchange, symbol), rows) in day order."""
    out = []
    name = part_name(segment)
    paths = [*features.glob(f"*/exchange=*/symbol=*/date=*/{name}"),              # hf/
             *features.glob(f"*/interval=*/exchange=*/symbol=*/date=*/{name}")]    # bars/interval=60s/, ...
    for path in sorted(paths):
        rel = path.relative_to(features).parts
        product = "/".join(rel[:-4])
        key = (exchange_from_path_value(rel[-4].split("=", 1)[1]), symbol_from_path_value(rel[-3].split("=", 1)[1]))
        out.append((product, key, pq.read_table(path)))
    return out


def unpublished(outputs: dict[Key, FeatureOutput], published: dict, maybe: dict | None) -> list[Publication]:
    """Rows of `outputs` (SegmentFeeder.held: only the lists with rows to publish are read back)
    beyond `published` (rows per (symbol, product), updated); those a previous process may have
    published (`maybe`: rows per (symbol, product); None: all) flagged as replays."""
    pubs = []
    for key, out in outputs.items():
        for product, tables in products(out):
            n = sum(t.num_rows for t in tables)
            start = published.get((key, product), 0)
            published[(key, product)] = n
            if n <= start:
                continue  # all published (the usual case): no table to build
            full = live_table(key, [table_blocks.table(t) for t in tables])
            again = n if maybe is None else maybe.get((key, product), 0)
            if again > start:
                pubs.append(Publication(product, full.slice(start, again - start), True))
            rest = max(start, again)
            if n > rest:
                pubs.append(Publication(product, full.slice(rest), False))
    return pubs


def live_table(key: Key, tables: list[pa.Table]) -> pa.Table:
    """Rows as the hive writer writes them for the product, with exchange and symbol in front."""
    return _keyed(prepare_table(tables), [key])


def _keyed(table: pa.Table, keys: list[Key], sizes: list[int] | None = None) -> pa.Table:
    """`table` -- the rows of `keys`, `sizes` rows each (one key: all rows) -- with exchange and
    symbol in front.  (add_column: rebuilding a 160-column hf table from its columns costs ~8x
    more per publish.)"""
    sizes = sizes or [table.num_rows]
    return table.add_column(0, "symbol", pa.array([k[1] for k, n in zip(keys, sizes) for _ in range(n)], pa.string())) \
                .add_column(0, "exchange", pa.array([k[0] for k, n in zip(keys, sizes) for _ in range(n)], pa.string()))


def live_tables(outputs: dict[tuple[Key, Product], list[pa.Table]]) -> dict[tuple[Key, Product], pa.Table]:
    """`live_table` of each (symbol, product) of one chunk, in the same order: the rows of all symbols
    of a product get their exchange and symbol columns in one pass, then are sliced back (two
    `add_column` calls per product and chunk instead of per symbol; same rows, same schema)."""
    prepared = {k: prepare_table(tables) for k, tables in outputs.items()}
    by_product: dict[Product, list[tuple[Key, Product]]] = {}
    for k in prepared:
        by_product.setdefault(k[1], []).append(k)
    out: dict[tuple[Key, Product], pa.Table] = {}
    for ks in by_product.values():
        try:
            whole = pa.concat_tables([prepared[k] for k in ks]) if len(ks) > 1 else prepared[ks[0]]
        except pa.ArrowInvalid:  # symbols whose options give the product other columns (etl.symbol_overrides)
            out.update({k: _keyed(prepared[k], [k[0]]) for k in ks})
            continue
        sizes = [prepared[k].num_rows for k in ks]
        out.update(zip(ks, slices(_keyed(whole, [k[0] for k in ks], sizes), sizes)))
    return {k: out[k] for k in prepared}
