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
