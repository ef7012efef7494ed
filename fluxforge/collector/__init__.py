"""`fluxforge collect`: ccxt.pro streams into crash-safe bronze segments.

Modules, in the order data flows through them:
  tap.py            sees every update inside ccxt as frames arrive (no coalescing)
  recorder.py       turns updates and stream events into queued rows, counts them
  rows.py           per-channel column buffers -> Arrow record batches
  row_queue.py      the bounded queue (block / drop policy, accounting)
  writer.py         journals every flush_interval, rotation, disk-full handling
  watchers.py       keeps subscriptions alive: backoff, gaps, reconnects, stalls
  snapshot_gate.py  staggers REST book snapshots
  health.py         watchdog health checks and the STATUS line
  app.py            the process: recovery, exchanges, writer, systemd
"""
