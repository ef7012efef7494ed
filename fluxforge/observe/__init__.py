"""Observation: read-only views of a data directory for operators.

`status` gathers facts (segments, streams, sync backlog, units), `status_checks` turns
them into warnings, `status_text` lays them out; `inspection` opens one segment or file;
`report` charts a symbol from the feature tree (`feature_tree`).
"""
