"""Verified S3 sync of bronze segments and feature files (`fluxforge sync`).

Modules: `client` (boto3 client + transfer settings from config, readable
errors), `checksums` (local flexible checksums), `state` (sqlite record of
verified uploads), `layout` (local files -> S3 keys), `upload` (s3transfer +
HEAD verification), `run` (one sync run), `download` (verified restore),
`timesync` (wait for a synchronised clock).
"""
