"""Bronze: the raw, lossless record of what the exchanges said.

A segment directory's location is its state (`segments`); while open it is a set of
append-only Arrow IPC journals (`journal`, `active_segment`); finishing turns them into
ZSTD Parquet plus a manifest (`finish`), and start-up recovery finishes what a crash left
open (`recovery`). `schemas` holds the Arrow schema of every channel.
"""
