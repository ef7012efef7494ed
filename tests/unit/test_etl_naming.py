from pathlib import Path

import pyarrow as pa

from fluxforge.etl.hive_writer import prepare_table, split_by_day
from fluxforge.etl.naming import bars_partition, date_of_day, hf_partition, part_name, symbol_path_value


def test_symbol_path_values():
    assert symbol_path_value("BTC/USDT") == "BTC-USDT"
    assert symbol_path_value("BTC/USDT:USDT") == "BTC-USDT-USDT"
    assert symbol_path_value("BTC/USD:BTC-250328") == "BTC-USD-BTC-250328"
    assert symbol_path_value("1000PEPE/USDT") == "1000PEPE-USDT"


def test_partition_paths():
    root = Path("/f")
    day = 1_723_075_200_000 // 86_400_000
    assert date_of_day(day) == "2024-08-08"
    assert hf_partition(root, "binance", "ETH/USDT", day) == Path("/f/hf/exchange=binance/symbol=ETH-USDT/date=2024-08-08")
    assert bars_partition(root, 60, "okx", "BTC/USDT:USDT", day) == \
        Path("/f/bars/interval=60s/exchange=okx/symbol=BTC-USDT-USDT/date=2024-08-08")
    assert part_name("seg-h-20240808T000000Z-000001") == "part-seg-h-20240808T000000Z-000001.parquet"


def test_split_at_midnight_and_sorting():
    ts = pa.array([1_723_161_599_000, 1_723_075_200_500, 1_723_161_600_000, 1_723_161_600_001],
                  pa.timestamp("ms", tz="UTC"))
    t = prepare_table([pa.table({"timestamp": ts, "exchange": ["x"] * 4, "v": [1, 2, 3, 4]})])
    assert "exchange" not in t.column_names
    assert t.column("v").to_pylist() == [2, 1, 3, 4]
    parts = split_by_day(t)
    assert [(date_of_day(d), p.column("v").to_pylist()) for d, p in parts] == \
        [("2024-08-08", [2, 1]), ("2024-08-09", [3, 4])]


def test_one_day_split_and_integer_times():
    ts = [1_723_075_200_000, 1_723_075_200_500, 1_723_161_599_999]
    for col in (pa.array(ts, pa.timestamp("ms", tz="UTC")), pa.array(ts, pa.int64())):
        parts = split_by_day(pa.table({"timestamp": col, "v": [1, 2, 3]}))
        assert [(date_of_day(d), p.num_rows) for d, p in parts] == [("2024-08-08", 3)]
    assert split_by_day(pa.table({"timestamp": pa.array([], pa.int64())})) == []


def test_parts_written_in_memory_are_the_bytes_written_to_the_file(tmp_path, monkeypatch):
    """A small part is encoded in memory and written at once, a large one streams to its file:
    the same table gives the same bytes either way."""
    import numpy as np

    from fluxforge.etl import hive_writer

    n = 5000
    table = pa.table({"timestamp": pa.array(1_723_075_200_000 + np.arange(n), pa.timestamp("ms", tz="UTC")),
                      **{f"f{i}": np.random.default_rng(i).normal(size=n) for i in range(12)}})
    digests = []
    for limit in (1 << 30, 0):
        monkeypatch.setattr(hive_writer, "BUFFERED_PART_BYTES", limit)
        writer = hive_writer.PartWriter("seg-h-20240808T000000Z-000001", 1024)
        writer.add(tmp_path / f"limit={limit}", table)
        [path] = writer.commit()
        digests.append(path.read_bytes())
    assert digests[0] == digests[1] and len(digests[0]) > 10_000
