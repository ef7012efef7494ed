"""Feature rows as live subscribers get them: the parts' columns with exchange and symbol in front.

Why a module: the live path publishes the rows of every chunk (`live_products`, all symbols of a
product built and given their two columns at once), of a segment the segment job wrote (`unpublished`) and,
after a restart, of the parts already landed (`landed_parts`) -- one shape for all three, the
shape `fluxforge.live` serves (docs/live.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..features import pending_tables, table_blocks
from ..features.pending_tables import PendingTable, build_all
from .bronze_reader import Key
from .engines import FeatureOutput
from .hive_writer import prepare_table, time_sorted, without_partition_columns
from .naming import exchange_from_path_value, part_name, symbol_from_path_value
from .segment_feed import Product, products


@dataclass
class Publication:
    product: Product
    table: pa.Table
    replay: bool = False
    runs: list[tuple[Key, int]] | None = None  # each stream's rows in table order, as built (None: the hub finds them)


def landed_parts(features: Path, segment: str) -> list[tuple[Product, Key, pa.Table]]:
    """The feature parts one segment wrote, as (product, (exchange, symbol), rows) in day order."""
    return [(product, key, pq.read_table(path)) for product, key, path in part_files(features, part_name(segment))]


def part_files(features: Path, name: str = "part-*.parquet", date: str = "*") -> list[tuple[Product, Key, Path]]:
    """(product, (exchange, symbol), path) of the part files under `features` named `name` (a glob)
    in partitions dated `date` (a glob), sorted by path."""
    paths = [*features.glob(f"*/exchange=*/symbol=*/date={date}/{name}"),              # hf/
             *features.glob(f"*/interval=*/exchange=*/symbol=*/date={date}/{name}")]    # bars/interval=60s/, ...
    out = []
    for path in sorted(paths):
        rel = path.relative_to(features).parts
        key = (exchange_from_path_value(rel[-4].split("=", 1)[1]), symbol_from_path_value(rel[-3].split("=", 1)[1]))
        out.append(("/".join(rel[:-4]), key, path))
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
            full = live_table(key, table_blocks.tables(tables))
            again = n if maybe is None else maybe.get((key, product), 0)
            if again > start:
                pubs.append(Publication(product, full.slice(start, again - start), True, [(key, again - start)]))
            rest = max(start, again)
            if n > rest:
                pubs.append(Publication(product, full.slice(rest), False, [(key, n - rest)]))
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


def live_products(outputs: dict[tuple[Key, Product], list]) -> list[tuple[Product, pa.Table, list[tuple[Key, int]]]]:
    """The rows of one chunk as the live path publishes them: per product, one table of all its
    symbols' rows one after another, each symbol's rows its `live_table`, and (symbol, rows) of each.
    The outputs are tables or, from the feeder, `PendingTable`s (features/pending_tables.py): a
    product's rows are built as one table (one build, not one per symbol) and given their exchange
    and symbol columns in one pass.  A product whose symbols' options give it other columns
    (etl.symbol_overrides), or with a symbol whose rows need the hive writer's sort, comes as a
    table per symbol."""
    by_product: dict[Product, list[tuple[Key, Product]]] = {}
    for k in outputs:
        by_product.setdefault(k[1], []).append(k)
    out = []
    for product, ks in by_product.items():
        sizes = [(k[0], sum(t.num_rows for t in outputs[k])) for k in ks]
        lists = [outputs[k] for k in ks]
        whole, built = _one_table(lists)
        if whole is None or not time_sorted(whole, [n for _, n in sizes]):
            built = built or _built(lists)
            out += [(product, live_table(k[0], tables), [size]) for k, tables, size in zip(ks, built, sizes)]
            continue
        out.append((product, _keyed(whole, [key for key, _ in sizes], [n for _, n in sizes]), sizes))
    return out


def _one_table(lists: list[list]) -> tuple[pa.Table | None, list[list[pa.Table]] | None]:
    """The rows of `lists` (tables and pending tables) as one table without partition columns, None
    if their columns differ; and the lists built, if they had to be (a fallback reuses them)."""
    items = [t for ts in lists for t in ts]
    if pending_tables.mergeable(items):
        return without_partition_columns(pending_tables.build(pending_tables.merge(items))), None
    built = _built(lists)
    try:
        return without_partition_columns(pa.concat_tables([t for ts in built for t in ts])), built
    except pa.ArrowInvalid:
        return None, built


def _built(lists: list[list]) -> list[list[pa.Table]]:
    """`lists` with their pending tables built (one build per builder)."""
    pending = [t for ts in lists for t in ts if isinstance(t, PendingTable)]
    tables = iter(build_all(pending))
    return [[next(tables) if isinstance(t, PendingTable) else table_blocks.table(t) for t in ts] for ts in lists]
