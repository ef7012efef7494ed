"""Live features: rows of the active segment, served to strategies (docs/live.md)."""
