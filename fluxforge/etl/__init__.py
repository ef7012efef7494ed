"""The ETL: bronze segments in ready/ -> Hive-partitioned feature files, exactly once.

Modules, one job each:

- `naming`     -- partition paths and file names (symbol `BTC/USDT` -> `BTC-USDT`).
- `bronze_reader` -- validates a finished segment against its manifest and schemas and
                  streams its rows as numpy arrays grouped by (exchange, symbol).
- `engines`    -- the per-(exchange, symbol) FeatureEngine bank with pending resets,
                  serialisable for checkpoints.
- `checkpoint` -- atomic store of the engine bank + the last segment it includes.
- `hive_writer`-- durable ZSTD Parquet parts under features/{hf,bars}/.
- `segment_job`-- one segment through engines to durable outputs (shared by the live
                  service and `fluxforge replay`, so both produce the same files).
- `runner`     -- the state machine around it: recover processing/, claim from ready/,
                  checkpoint, done/ or failed/.
- `ready_watch`-- inotify (ctypes) or polling wait for new segments in ready/.
- `service`    -- the asyncio service loop speaking systemd.
"""


def return_freed_memory_promptly() -> None:
    """Call before pyarrow is imported: its mimalloc pool then gives freed pages back at once
    instead of after 10 ms, which lowers the peak RSS for a 50 MB segment from ~420 MB to
    ~340 MB (bench/etl.py) at no measurable cost.

    And without transparent huge pages: mimalloc marks its 1 GiB arena MADV_HUGEPAGE, so even
    where the kernel's THP mode is `madvise` (this machine's) its pages come in 2 MB units and
    khugepaged fills a 2 MB range around a single used 4 kB page (max_ptes_none 511): the
    memory it had just given back returns as resident.  MIMALLOC_ALLOW_THP=0 turns THP off for
    the process (prctl PR_SET_THP_DISABLE, inherited by its children): peak RSS for a 50 MB
    segment 362 -> 343 MB; in a live soak the ETL's heap ~30 MB lower and its floor flat instead of
    creeping up; CPU within noise (docs/live.md, "The unit's memory limits").  An explicit environment
    setting wins."""
    import os

    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
    os.environ.setdefault("MIMALLOC_ALLOW_THP", "0")
