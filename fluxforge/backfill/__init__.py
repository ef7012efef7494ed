"""`fluxforge backfill`: recompute features for a fleet's bronze, in parallel, identical to `fluxforge replay`.

Stage modules, each with one job:
  location  -- `s3://bucket/prefix` or a local directory, and the S3 client for it (sync's settings)
  source    -- list segments (local directories or the sync layout in S3) with their manifests
  fetch     -- bring one S3 segment into a worker's cache, sha256-verified against its manifest
  plan      -- filters, units of work ((host, exchange, symbol) streams) and the run fingerprint
  dest      -- where units write (local or S3, verified uploads), done-markers, `_backfill.json`
  unit_job  -- what a worker runs: scan a segment's streams, run one unit through the ETL's segment job
  executor  -- the engine seam: a local process pool or a Dask cluster, as a concurrent.futures.Executor
  run       -- the orchestration a `fluxforge backfill` invocation performs
"""
