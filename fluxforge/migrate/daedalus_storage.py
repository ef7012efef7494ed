"""Daedalus `storage:` -> FluxForge `sync` (and `compaction.target_file_mb`).

Why its own module: Daedalus could point any of its layers (ingestion, ETL input, ETL output)
straight at S3, or upload later with its `storage.sync` job. FluxForge always writes locally
(crash-safe, DESIGN 2) and ships verified copies with `fluxforge sync`, so every S3 setting the
old file has becomes the one `sync` section: the explicit sync destination first, then the
layers that wrote to S3 directly (that upload is then enabled, or their data would stop
reaching the bucket). Keys are never copied into the file: they become credential references.
"""
from __future__ import annotations

from typing import Any

from .config_translation import Translation, mapping_at

_LAYERS = ("etl_storage_output", "ingestion_storage", "etl_storage_input")
_LOCAL_DIR = ("FluxForge keeps all its data under data_dir (default /var/lib/fluxforge; segments/, features/, "
              "state/); bring the old files over with `fluxforge import daedalus`")
SYNC_NO_EQUIVALENT = {
    "source": "sync uploads what is under data_dir (bronze segments and features)",
    "compact_before_upload": "closed day partitions are merged by fluxforge-compact.timer (compaction.*), "
                             "whether or not sync runs",
    "interval_seconds": "sync runs from fluxforge-sync.timer (every 15 minutes); change it with "
                        "`systemctl edit fluxforge-sync.timer` (OnCalendar=)",
    "paths": "sync uploads bronze and features, each switchable: sync.upload_bronze, sync.upload_features",
}
S3_NO_EQUIVALENT = {
    "aws_session_token": "temporary credentials: leave the key fields unset so boto3's standard chain "
                         "(instance role, AWS_* environment, ~/.aws) supplies them",
    "max_pool_connections": "FluxForge sizes botocore's pool from sync.workers (2x: transfers plus verifying HEADs)",
}


def _s3(layer: dict[str, Any], where: str, tr: Translation) -> None:
    """One S3 layer (`backend: s3`, its `s3:` mapping) into `sync`; the first bucket seen wins."""
    section = mapping_at(layer, "s3")
    where = f"{where}.s3"
    if not section.get("bucket") and layer.get("base_dir"):  # Daedalus: `s3.bucket or base_dir`
        section = {**section, "bucket": layer["base_dir"]}
    bucket = section.get("bucket")
    if bucket and tr.get("sync.bucket") not in (None, bucket):
        tr.warn(f"{where}.bucket", f"bucket {bucket!r} is not translated: FluxForge syncs to one bucket "
                                   f"({tr.get('sync.bucket')!r}, set above)")
        return
    for key, value in section.items():
        old_key = f"{where}.{key}"
        if key in S3_NO_EQUIVALENT:
            if value not in (None, ""):
                tr.warn(old_key, S3_NO_EQUIVALENT[key])
        elif key in ("aws_access_key_id", "aws_secret_access_key"):
            if value and not tr.get(f"sync.{key}"):
                stem = "s3_" + key.removeprefix("aws_")
                tr.config.setdefault("sync", {})[key] = tr.credential(old_key, stem, f"sync.{key}")
        elif key in ("bucket", "region", "endpoint_url"):
            if value and tr.get(f"sync.{key}") is None:
                tr.set(f"sync.{key}", value, old_key)
            elif value == tr.get(f"sync.{key}"):
                tr.record(old_key, f"sync.{key}", "the same value, already set")
            elif value:
                tr.warn(old_key, f"{value!r} is not used: sync.{key} is {tr.get(f'sync.{key}')!r} (set above)")
        else:
            tr.warn(old_key, "not a Daedalus S3 option FluxForge knows: not translated")


def _sync_job(sync: dict[str, Any], tr: Translation) -> None:
    for key, value in sync.items():
        old_key = f"storage.sync.{key}"
        if key == "enabled":
            tr.set("sync.enabled", bool(value), old_key)
        elif key == "destination":
            dest = value if isinstance(value, dict) else {}
            if dest.get("backend", "local") == "s3":
                _s3(dest, old_key, tr)
                tr.record(f"{old_key}.backend", "sync", "S3")
                if dest.get("base_dir"):
                    tr.record(f"{old_key}.base_dir", "sync.bucket", "Daedalus's bucket when s3.bucket is empty")
            else:
                tr.warn(old_key, "a local destination: FluxForge syncs to S3 only; copy data_dir with your own tools")
        elif key == "delete_after_transfer":
            tr.set("sync.delete_after_upload", bool(value), old_key)
        elif key == "max_workers" and isinstance(value, int):
            tr.set("sync.workers", max(1, min(64, value)), old_key, "" if 1 <= value <= 64 else "clamped to 1..64")
        elif key == "target_file_size_mb":
            tr.set("compaction.target_file_mb", value, old_key)
        elif key in SYNC_NO_EQUIVALENT:
            tr.warn(old_key, SYNC_NO_EQUIVALENT[key])
        else:
            tr.warn(old_key, "not a Daedalus sync option FluxForge knows: not translated")


def translate_storage(old: dict[str, Any], tr: Translation) -> None:
    storage = mapping_at(old, "storage")
    _sync_job(mapping_at(storage, "sync"), tr)
    for layer in _LAYERS:
        section = mapping_at(storage, layer)
        where = f"storage.{layer}"
        if section.get("backend") == "s3":
            _s3(section, where, tr)
            if not tr.get("sync.enabled"):
                tr.set("sync.enabled", True, f"{where}.backend",
                       "Daedalus wrote this layer to S3 directly; FluxForge writes locally and uploads")
            else:
                tr.record(f"{where}.backend", "sync.enabled", "uploaded by sync")
            if section.get("base_dir"):
                tr.record(f"{where}.base_dir", "sync.bucket", "Daedalus's bucket when s3.bucket is empty")
        else:
            if "backend" in section:
                tr.record(f"{where}.backend", "data_dir", "local: FluxForge writes locally")
            if section.get("base_dir"):
                tr.warn(f"{where}.base_dir", _LOCAL_DIR)
        for key in section:
            if key not in ("backend", "base_dir", "s3"):
                tr.warn(f"{where}.{key}", "not a Daedalus storage layer option FluxForge knows: not translated")
    for key in mapping_at(storage, "paths"):
        tr.warn(f"storage.paths.{key}", "FluxForge's layout under data_dir is fixed (docs/architecture.md, "
                                        "'Where state lives')")
    for key in storage:
        if key not in (*_LAYERS, "sync", "paths"):
            tr.warn(f"storage.{key}", "not a Daedalus storage option FluxForge knows: not translated")
