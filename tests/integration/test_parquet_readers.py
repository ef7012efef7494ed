"""The Parquet FluxForge writes, read by the tools its users read it with: DuckDB, Polars, pandas, Spark.

Why: the files are the product -- features/ (Hive-partitioned) and bronze segments -- and the
promise is that DuckDB, Polars, pandas and Spark read them as they are.  This checks each of
them, unmodified, against pyarrow's read of the same files, every row and every column: the
real Binance captures replayed through the collector and the ETL with every product on (hf,
bars, trade bars, volume and dollar bars, per-trade rows, tickers), one symbol's partitions
merged by compaction and the other's left as the ETL wrote them (a tree holds both), and the
bronze segments.

A type one of them cannot read (nanosecond timestamps, for Spark), a partition
value it parses into something else, a column it drops or a value it changes fails here.
Spark is a real local session (pyspark on Debian's Java, packaging/install-host-deps.sh).
"""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from collector_support import record_capture

from fluxforge.config import FeatureOptions, TradeOptions
from fluxforge.etl.naming import hf_partition, symbol_path_value
from fluxforge.etl.runner import EtlRunner
from fluxforge.maintenance.compaction import iter_partitions, merge_group, plan_partition

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
MERGED = "symbol=BTC-USDT"  # its partitions merged by compaction; ETH-USDT's as the ETL wrote them
TREES = ["hf", "bars", "trade_bars", "volume_bars", "dollar_bars", "trades", "ticker"]
CHANNELS = ["orderbook", "trades", "ticker", "events"]
READERS = ["duckdb", "polars", "pandas", "spark"]
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from conftest import SHARED_DATA
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data/binance-spot not present")
    data = tmp_path_factory.mktemp("readers") / "data"
    files = [SHARED_DATA / "btcusdt_20240808.gz", SHARED_DATA / "ethusdt_20240808.gz"]

    record_capture(data, files, SYMBOLS, ["orderbook", "trades", "ticker"])
    trades = TradeOptions(bar_durations=[1, 60], volume_bar_size=1.0, dollar_bar_size=1_000_000.0, per_trade=True)
    runner = EtlRunner(data / "segments", data / "features", data / "state",
                       FeatureOptions(hf_emit_interval=1.0, bar_durations=[5, 60]), trade_options=trades)
    outcomes = runner.run_once()
    assert len(outcomes) >= 2 and all(o.state == "done" for o in outcomes)
    merged = 0
    for partition, _day in iter_partitions(data / "features", datetime.date(2100, 1, 1)):
        if MERGED in partition.parts:
            for group in plan_partition(partition, 64 << 20):
                merge_group(group, 65536)
                merged += 1
    assert merged >= len(TREES)
    return data


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """A local Spark session.  pyspark warns at start-up that it does not fully support pandas 3
    (its pandas API and toPandas); this test hands Spark's rows over as Arrow (`toArrow`), so the
    warning is about a path not taken here and is filtered (`pytestmark`)."""
    from pyspark.sql import SparkSession
    scratch = tmp_path_factory.mktemp("spark")
    session = (SparkSession.builder.master("local[1]").appName("fluxforge-readers")
               .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1").config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
               .config("spark.local.dir", str(scratch / "local")).getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _read(reader: str, paths: list[Path], hive: bool, spark=None) -> pa.Table:
    """What `reader` reads of `paths` (a Hive tree's root, or files), as an Arrow table."""
    if reader == "duckdb":
        import duckdb
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        if hive:
            return con.sql(f"SELECT * FROM read_parquet('{paths[0]}/**/*.parquet', hive_partitioning=true)").to_arrow_table()
        return con.sql(f"SELECT * FROM read_parquet({[str(p) for p in paths]!r})").to_arrow_table()
    if reader == "polars":
        import polars as pl
        if hive:
            return pl.scan_parquet(f"{paths[0]}/**/*.parquet", hive_partitioning=True).collect().to_arrow()
        return pl.read_parquet([str(p) for p in paths]).to_arrow()
    if reader == "pandas":
        import pandas as pd
        frame = pd.read_parquet(paths[0]) if hive else pd.concat([pd.read_parquet(p) for p in paths])
        return pa.Table.from_pandas(frame, preserve_index=False)
    return _spark_table(spark.read.parquet(*[str(p) for p in paths]))


def _spark_table(frame) -> pa.Table:
    """A Spark DataFrame as Arrow, its timestamps as epoch ms: no session time zone, no datetime round trip."""
    from pyspark.sql import functions as F
    for field in frame.schema.fields:
        if field.dataType.typeName() == "timestamp":
            frame = frame.withColumn(field.name, F.unix_millis(F.col(field.name)))
    return frame.toArrow()


def _plain(table: pa.Table) -> pa.Table:
    """Each reader's spelling of the same values made one: timestamps as epoch ms, dates (Hive
    `date=`) as text, dictionaries and large or view strings as strings, large lists as lists."""
    columns = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = pc.cast(pc.cast(col, pa.timestamp("ms", tz="UTC")), pa.int64())
        elif pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        elif pa.types.is_large_list(col.type):
            col = col.cast(pa.list_(col.type.value_type))
        if pa.types.is_date(col.type) or pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
            col = col.cast(pa.string())
        columns[name] = col
    return pa.table(columns)


def _sorted(table: pa.Table) -> pa.Table:
    keys = [n for n in sorted(table.column_names) if not pa.types.is_list(table.schema.field(n).type)]
    return table.sort_by([(k, "ascending") for k in keys])


def _same(expected: pa.Table, got: pa.Table, what: str, nulls_as_nan: bool) -> None:
    """Every row and column of `expected` in `got` (as sorted: readers order files differently).
    nulls_as_nan: pandas keeps a float or integer column's nulls as NaN."""
    assert sorted(got.column_names) == sorted(expected.column_names), what
    assert got.num_rows == expected.num_rows, what
    expected, got = _sorted(_plain(expected)), _sorted(_plain(got.select(expected.column_names)))
    for name in expected.column_names:
        a, b = expected.column(name).combine_chunks(), got.column(name).combine_chunks()
        if nulls_as_nan and (pa.types.is_floating(b.type) and not pa.types.is_floating(a.type)):
            a = a.cast(b.type)  # an integer column with nulls: pandas reads it as float64
        if pa.types.is_floating(a.type):
            x = a.to_numpy(zero_copy_only=False).astype(np.float64)
            y = b.cast(a.type).to_numpy(zero_copy_only=False).astype(np.float64)
            assert np.array_equal(x, y, equal_nan=True), f"{what}: column {name} differs"
            if not nulls_as_nan:
                assert a.is_null().equals(b.is_null()), f"{what}: column {name}'s nulls differ"
        else:
            assert a.equals(b.cast(a.type)), f"{what}: column {name} differs ({a.type} read as {b.type})"


def _footer_rows(paths: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("reader", READERS)
def test_every_feature_tree_reads_the_same_in_each_reader(data, reader, request):
    spark = request.getfixturevalue("spark") if reader == "spark" else None
    features = data / "features"
    for tree in TREES:
        files = sorted((features / tree).rglob("*.parquet"))
        assert any(MERGED in p.parts and "--" in p.name for p in files), f"{tree}: no merged file"
        assert any(MERGED not in p.parts for p in files), f"{tree}: only merged files"
        expected = ds.dataset(features / tree, partitioning="hive", format="parquet").to_table()
        assert expected.num_rows == _footer_rows(files) > 0, tree
        for key in ("exchange", "symbol", "date"):
            assert key in expected.column_names, (tree, key)
        _same(expected, _read(reader, [features / tree], True, spark), f"{reader} {tree}", reader == "pandas")


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("reader", READERS)
def test_bronze_segments_read_the_same_in_each_reader(data, reader, request):
    spark = request.getfixturevalue("spark") if reader == "spark" else None
    done = sorted((data / "segments" / "done").iterdir())
    for channel in CHANNELS:
        files = [seg / f"{channel}.parquet" for seg in done]
        expected = ds.dataset(files, format="parquet").to_table()
        assert expected.num_rows == _footer_rows(files), channel
        if channel != "events":
            assert expected.num_rows > 100, channel
        _same(expected, _read(reader, files, False, spark), f"{reader} bronze {channel}", reader == "pandas")


# symbols outside the readable BASE/QUOTE[:SETTLE[-EXPIRY]] form: written %XX-encoded (etl/naming.py);
# the first two are real Binance listings
ODD_SYMBOLS = ["币安人生/USDT", "客服小何/USDT", "foo bar/USDT", "ABC/USD/X", "Ω/USDT", "a=b/USDT", "x%y/USDT",
               "BTC/USDT"]
# Spark decodes a partition value's %XX escapes a byte at a time into the characters U+0000-U+00FF,
# so a non-ASCII symbol reads as its UTF-8 bytes spelled in Latin-1; docs/schemas.md gives this fix
SPARK_SYMBOL = "decode(encode(symbol, 'ISO-8859-1'), 'UTF-8')"


@pytest.mark.parametrize("reader", READERS)
def test_an_encoded_symbol_partition_reads_as_the_symbol_in_each_reader(tmp_path, reader, request):
    spark = request.getfixturevalue("spark") if reader == "spark" else None
    features = tmp_path / "features"
    for i, symbol in enumerate(ODD_SYMBOLS):
        part = hf_partition(features, "binance", symbol, 19_000)
        part.mkdir(parents=True)
        pq.write_table(pa.table({"timestamp": pa.array([i], pa.timestamp("ms", tz="UTC")), "i": [i]}),
                       part / "part-x.parquet")
    expected = ds.dataset(features / "hf", partitioning="hive", format="parquet").to_table().sort_by("i")
    readable = [s.replace("/", "-") for s in ODD_SYMBOLS]
    assert expected.column("symbol").to_pylist() == [
        r if symbol_path_value(s) == r else s for s, r in zip(ODD_SYMBOLS, readable)]  # %XX decoded: the symbol
    if reader == "spark":
        from pyspark.sql import functions as F
        got = _spark_table(spark.read.parquet(str(features / "hf")).withColumn("symbol", F.expr(SPARK_SYMBOL)))
    else:
        got = _read(reader, [features / "hf"], True)
    _same(expected, got, f"{reader} encoded symbols", reader == "pandas")


@pytest.mark.realdata
@pytest.mark.slow
def test_the_synced_bucket_reads_as_the_local_tree_in_pyarrow_and_polars(data, tmp_path):
    """Research reads the fleet's bucket directly: `fluxforge sync` to moto (real HTTP, real boto3),
    then each tree read from S3 by pyarrow (the AWS C++ SDK) and Polars (Rust object_store).  Spark and
    DuckDB need the hadoop-aws jars and the httpfs extension, downloads this machine cannot make."""
    import polars as pl
    import yaml
    from pyarrow import fs
    from s3harness import MotoServer

    from fluxforge.cli import main
    bucket, prefix = "fluxforge-readers", "fleet"
    with MotoServer() as moto:
        moto.client().create_bucket(Bucket=bucket)
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "data_dir": str(data), "host_id": "test", "exchanges": [{"name": "binance", "symbols": SYMBOLS}],
            "metrics": {"enabled": False},
            "retention": {"disk_high_watermark": 100.0, "disk_low_watermark": 100.0},  # this test deletes nothing
            "sync": {"enabled": True, "bucket": bucket, "prefix": prefix, "endpoint_url": moto.url,
                     "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "require_time_sync": False}}))
        assert main(["sync", "-c", str(config)]) == 0
        s3 = fs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                             endpoint_override=moto.url.removeprefix("http://"))
        options = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_region": "us-east-1",
                   "aws_endpoint_url": moto.url, "aws_allow_http": "true"}
        for tree in TREES:
            expected = ds.dataset(data / "features" / tree, partitioning="hive", format="parquet").to_table()
            remote = ds.dataset(f"{bucket}/{prefix}/features/{tree}", filesystem=s3, partitioning="hive",
                                format="parquet").to_table()
            _same(expected, remote, f"pyarrow s3 {tree}", False)
            got = pl.scan_parquet(f"s3://{bucket}/{prefix}/features/{tree}/**/*.parquet", hive_partitioning=True,
                                  storage_options=options).collect().to_arrow()
            _same(expected, got, f"polars s3 {tree}", False)
