"""A bronze file damaged on disk before its upload (bit rot while S3 was down) is not shipped as the
backup: moto over HTTP, real boto3, retention on a real small tmpfs.

Before, sync uploaded the damaged bytes, verified that S3 held exactly them, recorded the file as
backed up, uploaded its segment's manifest (a complete segment) and let retention free the local
copy: the only backup of that data held the damage, and nothing said so."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import moto  # noqa: E402,F401
from syncdata import bronze_segment, fresh_logging, make_config, utc_day  # noqa: E402,F401
from test_retention import fill_to, write_config  # noqa: E402
from test_sync_bronze_backup import remote_keys_all, remote_segments  # noqa: E402

from fluxforge.bronze.segments import SegmentStore  # noqa: E402
from fluxforge.cli import main  # noqa: E402

_ids = itertools.count()


def test_a_damaged_bronze_file_is_kept_named_and_never_backed_up(mount_tmpfs, moto, capsys):
    fs = mount_tmpfs("24m")
    bucket = f"fluxforge-damaged-{next(_ids)}"
    moto.client().create_bucket(Bucket=bucket)
    cfg = make_config(fs / "data")
    segs = [bronze_segment(cfg.segments_dir, "pi01", 1 + i, utc_day(3).replace(hour=i), rows=1000, seed=i)
            for i in range(4)]
    flipped, cut = segs[1] / "orderbook.parquet", segs[2] / "trades.parquet"
    originals = {p: p.read_bytes() for p in (flipped, cut)}
    data = bytearray(originals[flipped])
    data[len(data) // 2] ^= 0x10  # one bit, same size: only the sha256 tells
    flipped.write_bytes(bytes(data))
    cut.write_bytes(originals[cut][: len(originals[cut]) // 2])
    cfg_path = write_config(fs, moto.url, bucket)
    settings = yaml.safe_load(cfg_path.read_text())
    settings["metrics"] = {"textfile_dir": str(fs / "textfiles")}
    cfg_path.write_text(yaml.safe_dump(settings))
    (fs / "textfiles").mkdir()
    capsys.readouterr()

    assert main(["sync", "-c", str(cfg_path), "--dry-run"]) == 1  # what the run would do, reading every file
    out = capsys.readouterr()[0]
    assert out.count("DAMAGED") == 2 and f"upload {flipped}" not in out and f"upload {cut}" not in out
    assert f"{segs[1].name}/manifest.json" not in out and f"upload {segs[0] / 'manifest.json'}" in out
    assert "2 damaged kept back" in out and not remote_keys_all(moto, bucket)

    assert main(["sync", "-c", str(cfg_path)]) == 1
    out, err = capsys.readouterr()
    assert f"DAMAGED {flipped}: sha256" in out and f"DAMAGED {cut}: " in out and "truncated" in out
    assert "FAILED" not in out and err.count('"event": "bronze_file_damaged"') == 2
    keys = remote_keys_all(moto, bucket)
    assert not any(k.endswith(f"{segs[1].name}/orderbook.parquet") or k.endswith(f"{segs[2].name}/trades.parquet")
                   for k in keys)
    assert remote_segments(moto, bucket) == {segs[0].name, segs[3].name}  # no manifest: not complete in S3
    assert sum(segs[1].name in k for k in keys) == 3  # its sound files are backed up all the same
    prom = (fs / "textfiles" / "fluxforge_sync.prom").read_text()
    assert "fluxforge_sync_damaged_files 2.0" in prom and 'outcome="failure"' in prom, prom

    # a full disk: retention frees the verified segments, never the ones not wholly backed up
    fill_to(fs, 97)
    assert main(["retention", "-c", str(cfg_path)]) == 0
    assert [p.name for p in SegmentStore(cfg.segments_dir).list("done")] == [segs[1].name, segs[2].name]
    (fs / "filler.bin").unlink()

    # still named by every run until an operator acts; the good bytes back (a copy found
    # elsewhere) are then shipped, and their segments completed in S3
    assert main(["sync", "-c", str(cfg_path)]) == 1
    assert capsys.readouterr()[0].count("DAMAGED") == 2
    for p, good in originals.items():
        p.write_bytes(good)
    assert main(["sync", "-c", str(cfg_path)]) == 0
    assert remote_segments(moto, bucket) == {s.name for s in segs}
    assert "fluxforge_sync_damaged_files 0.0" in (fs / "textfiles" / "fluxforge_sync.prom").read_text()
