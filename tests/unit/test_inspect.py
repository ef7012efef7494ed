"""`fluxforge inspect`: segment directories, Parquet and journal files, and bad input."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bronze_builders import NS, book_rows, event_rows, merge, now_ns, spaced, trade_rows, write_segment
from fluxforge.cli import main

START = datetime(2024, 8, 8, 12, 0, 0, tzinfo=timezone.utc)
T0 = int(START.timestamp() * NS)


def _segment(tmp_path, state="ready"):
    return write_segment(tmp_path, state, START, 7, {
        "orderbook": merge(book_rows("binance", "BTC/USDT", spaced(T0, 10, 5)),
                           book_rows("binance", "ETH/USDT", spaced(T0, 10, 2))),
        "trades": trade_rows("binance", "BTC/USDT", spaced(T0 + NS, 5, 1)),
        "events": event_rows("binance", "ETH/USDT", [T0 + 3 * NS], "gap"),
    })


def _run_json(capsys, *argv):
    rc = main(["inspect", "--json", *argv])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_segment_reports_state_files_symbols_and_verified_manifest(tmp_path, capsys):
    seg = _segment(tmp_path)
    rc, info = _run_json(capsys, str(seg))
    assert rc == 0
    assert info["segment"] == seg.name and info["state"] == "ready" and info["seq"] == 7
    assert info["manifest"]["status"] == "ok" and info["manifest"]["problems"] == []
    book = info["files"]["orderbook.parquet"]
    assert book["rows"] == 70
    assert book["symbols"] == {"binance:BTC/USDT": 50, "binance:ETH/USDT": 20}
    assert book["time_range"]["column"] == "timestamp"
    assert book["time_range"]["first"] == "2024-08-08T12:00:00.000+00:00"
    assert book["time_range"]["last"].startswith("2024-08-08T12:00:09.")
    assert {c["name"]: c["type"] for c in book["schema"]}["bid_px"].startswith("list<")
    assert book["book_rows"] == {"snapshot": 70}
    assert info["files"]["events.parquet"]["symbols"] == {"binance:ETH/USDT": 1}


def test_text_output_is_readable(tmp_path, capsys):
    seg = _segment(tmp_path)
    assert main(["inspect", str(seg)]) == 0
    out = capsys.readouterr().out
    assert "state     ready" in out
    assert "manifest  ok" in out
    assert "binance:BTC/USDT (50)" in out
    assert "book rows snapshot 70" in out
    assert "== trades.parquet" in out


def test_tampered_file_is_a_manifest_mismatch_and_exit_1(tmp_path, capsys):
    seg = _segment(tmp_path)
    t = pq.read_table(seg / "trades.parquet")
    pq.write_table(t.slice(0, 2), seg / "trades.parquet")
    rc, info = _run_json(capsys, str(seg))
    assert rc == 1
    assert info["manifest"]["status"] == "mismatch"
    problems = " ".join(info["manifest"]["problems"])
    assert "trades.parquet: manifest says 5 rows, file has 2" in problems
    assert "sha256" in problems


def test_active_segment_reads_journals_and_skips_torn_tail(tmp_path, capsys):
    t = now_ns()
    seg = write_segment(tmp_path, "active", datetime.now(timezone.utc), 1,
                        {"orderbook": book_rows("binance", "BTC/USDT", spaced(t, 4, 5))})
    journal = seg / "orderbook.arrows"
    data = journal.read_bytes()
    # A writer killed mid-batch: the journal ends in the first half of a record batch.
    batch = data[len(data) // 2:]
    journal.write_bytes(data + batch[: len(batch) // 2])
    rc, info = _run_json(capsys, str(seg))
    assert rc == 0
    assert info["state"] == "active"
    assert info["manifest"]["status"] == "absent (active journal)"
    f = info["files"]["orderbook.arrows"]
    assert f["rows"] == 20 and f["torn_tail"] is True


def test_feature_file_uses_partitions_and_timestamp_type(tmp_path, capsys):
    part = tmp_path / "bars/interval=60s/exchange=binance/symbol=BTC-USDT/date=2024-08-08"
    part.mkdir(parents=True)
    ts = pa.array([T0 // 1_000_000 + i * 60_000 for i in range(3)], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    pq.write_table(pa.table({"timestamp": ts, "mid_close": [1.0, 2.0, 3.0]}), part / "part-x.parquet")
    rc, info = _run_json(capsys, str(part / "part-x.parquet"))
    assert rc == 0
    assert info["partition"] == {"interval": "60s", "exchange": "binance", "symbol": "BTC-USDT", "date": "2024-08-08"}
    assert info["symbols"] == {"binance:BTC-USDT": 3}
    assert info["time_range"] == {"column": "timestamp", "first": "2024-08-08T12:00:00.000+00:00",
                                  "last": "2024-08-08T12:02:00.000+00:00"}


@pytest.mark.parametrize("content", [b"", b"PAR1 not really", b"\x00" * 100])
def test_corrupt_file_is_one_clear_line(tmp_path, capsys, content):
    bad = tmp_path / "orderbook.parquet"
    bad.write_bytes(content)
    rc = main(["inspect", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith(f"fluxforge: {bad}: not a readable Parquet file")
    assert len(err.strip().splitlines()) == 1


def test_truncated_parquet_inside_segment_is_reported_not_raised(tmp_path, capsys):
    seg = _segment(tmp_path)
    data = (seg / "orderbook.parquet").read_bytes()
    (seg / "orderbook.parquet").write_bytes(data[: len(data) // 2])
    rc, info = _run_json(capsys, str(seg))
    assert rc == 1
    assert "not a readable Parquet file" in info["files"]["orderbook.parquet"]["error"]
    assert info["manifest"]["status"] == "mismatch"


def test_missing_path_and_non_segment_dir(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope")]) == 1
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path)]) == 1
    assert "not a segment directory" in capsys.readouterr().err


def test_failed_segment_shows_reason(tmp_path, capsys):
    seg = _segment(tmp_path, state="failed")
    (seg / "reason.txt").write_text("etl: crossed book at row 3\n")
    rc, info = _run_json(capsys, str(seg))
    assert info["state"] == "failed" and info["failure_reason"] == "etl: crossed book at row 3"
    assert rc == 0


def test_output_into_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`fluxforge inspect --json ... | head -1`: the reader leaves early; exit like SIGPIPE, stderr quiet."""
    import subprocess
    import sys

    seg = _segment(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "fluxforge", "inspect", "--json", *[str(seg)] * 200],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_manifest_file_outside_the_segment_is_a_problem_not_a_read(tmp_path, capsys):
    seg = _segment(tmp_path)
    outside = seg.parent.parent / "outside.parquet"  # where ../../outside.parquet points
    outside.write_bytes((seg / "trades.parquet").read_bytes())
    m = json.loads((seg / "manifest.json").read_text())
    m["channels"]["trades"]["file"] = "../../outside.parquet"
    m["channels"]["bogus"] = {"file": "trades.parquet"}
    (seg / "manifest.json").write_text(json.dumps(m))
    rc, info = _run_json(capsys, str(seg))
    assert rc == 1 and info["manifest"]["status"] == "mismatch"
    problems = " ".join(info["manifest"]["problems"])
    assert "channel 'trades' names file '../../outside.parquet'; only 'trades.parquet' is allowed" in problems
    assert "unknown channel 'bogus'" in problems


def _delta_segment(tmp_path):
    """One symbol recorded as format 2 messages: snapshot, deltas (a delete, a re-add, a crossing
    level), a lost message (gap), then a snapshot that resyncs."""
    t = [T0 + i * NS // 10 for i in range(7)]
    rows = [("snapshot", 10, None, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0), (102.0, 3.0)]),
            ("delta", 11, 10, [(99.0, 0.0), (98.5, 4.0)], [(101.0, 2.0)]),
            ("delta", 12, 11, [(99.0, 5.0)], [(100.5, 1.5)]),
            ("delta", 15, 13, [(97.0, 1.0)], []),                       # 13 was lost: a gap
            ("delta", 16, 15, [(96.0, 1.0)], []),
            ("snapshot", 20, None, [(100.2, 1.0)], [(100.4, 1.0)]),
            ("delta", 21, 20, [(100.1, 2.0)], [])]
    cols = {k: [] for k in ("exchange", "symbol", "timestamp", "recv_ns", "kind", "nonce", "prev_nonce", "checksum",
                            "bid_px", "bid_sz", "ask_px", "ask_sz")}
    for recv, (kind, nonce, prev, bids, asks) in zip(t, rows):
        for k, v in (("exchange", "binance"), ("symbol", "BTC/USDT"), ("timestamp", recv // 1_000_000),
                     ("recv_ns", recv), ("kind", kind), ("nonce", nonce), ("prev_nonce", prev), ("checksum", None),
                     ("bid_px", [p for p, _ in bids]), ("bid_sz", [q for _, q in bids]),
                     ("ask_px", [p for p, _ in asks]), ("ask_sz", [q for _, q in asks])):
            cols[k].append(v)
    return write_segment(tmp_path, "ready", START, 9, {"orderbook": cols}), t


def test_book_at_rebuilds_the_segment_book_at_that_time(tmp_path, capsys):
    seg, t = _delta_segment(tmp_path)
    at = datetime.fromtimestamp(t[2] / NS, tz=timezone.utc).isoformat()
    rc, view = _run_json(capsys, str(seg), "--book-at", at, "--symbol", "BTC/USDT")
    assert rc == 0 and view["synced"] and view["messages"] == 3
    assert view["bids"] == [[100.0, 1.0], [99.0, 5.0], [98.5, 4.0]]
    assert view["asks"] == [[100.5, 1.5], [101.0, 2.0], [102.0, 3.0]]
    # after the gap the book is unknown (exit 1) until the next snapshot
    rc, view = _run_json(capsys, str(seg), "--book-at", str(t[4] // 1_000_000), "--symbol", "BTC/USDT")
    assert rc == 1 and not view["synced"] and view["counters"]["book_gaps"] == 1
    assert main(["inspect", str(seg), "--book-at", str(t[6] // 1_000_000), "--symbol", "BTC/USDT"]) == 0
    text = capsys.readouterr().out
    assert "100.1" in text and "100.4" in text and "gaps 1" in text


def test_book_at_on_a_damaged_orderbook_file_is_one_clear_line(tmp_path, capsys):
    seg, t = _delta_segment(tmp_path)
    book = next(p for p in seg.iterdir() if p.stem == "orderbook")
    book.write_bytes(book.read_bytes()[:-40] if book.suffix == ".parquet" else b"\xff" * 64)
    assert main(["inspect", str(seg), "--book-at", str(t[2] // 1_000_000), "--symbol", "BTC/USDT"]) == 1
    err = capsys.readouterr().err
    assert f"{book}: cannot be read" in err and "Traceback" not in err


def test_book_at_needs_a_symbol_and_a_time(tmp_path, capsys):
    seg, _ = _delta_segment(tmp_path)
    assert main(["inspect", str(seg), "--book-at", "noon", "--symbol", "BTC/USDT"]) == 1
    assert "ISO 8601" in capsys.readouterr().err
    assert main(["inspect", str(seg), "--book-at", "2024-08-08T12:00:00"]) == 2
    assert main(["inspect", str(seg), "--book-at", "2024-08-08T12:00:00", "--symbol", "NOPE/USDT"]) == 1
