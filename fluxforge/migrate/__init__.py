"""Moving in from other systems: their config and their recorded data become FluxForge's.

Stage modules, each with one job (Daedalus is the first system):
  config_translation -- a translated config plus its provenance, warnings and credential references, as YAML
  daedalus_config  -- Daedalus config.yaml -> FluxForge config (`fluxforge config import-daedalus`)
  daedalus_exchanges -- its ccxt.exchanges and native coinbase: sections -> exchanges: entries
  ccxt_facts       -- what ccxt.pro says offline: watch_ohlcv's default timeframe, channels it cannot serve
  daedalus_features -- its processor_options / features: -> etl.features (units converted)
  daedalus_storage -- its storage layers and sync job -> sync
  daedalus_schema  -- what Daedalus wrote: its raw Parquet columns, NDJSON record keys, symbol sanitising
  daedalus_values  -- one old value read and type-checked (BadLine with the reason otherwise)
  daedalus_ndjson  -- one NDJSON line -> rows shaped like Daedalus's own Parquet rows (or a reason why not)
  daedalus_coinbase -- its native Coinbase collector's raw messages -> the same rows, as ccxt.pro normalises them
  daedalus_read    -- find the files, read Parquet (flat / partitioned) and NDJSON in chunks, never raise
  daedalus_map     -- old rows -> bronze rows (vectorised), and what has no bronze column
  hour_spill       -- bronze rows bucketed by UTC hour on disk until each hour's segment is built
  import_ledger    -- which files were imported (by content hash), crash-safe announce / commit
  import_report    -- counts of everything imported, skipped or not mappable, as text
  daedalus_import  -- the run `fluxforge import daedalus` performs
"""
