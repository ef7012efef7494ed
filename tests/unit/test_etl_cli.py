"""`fluxforge replay` / `fluxforge etl` user errors: one clear line, no traceback."""
import pytest
import structlog

from fluxforge.cli import main


@pytest.fixture(autouse=True)
def keep_logging_config():
    """Commands configure structlog onto this test's captured stderr: restore it afterwards."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_replay_missing_source(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_replay_without_segments(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["replay", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no bronze segments found" in capsys.readouterr().err


def test_etl_bad_config_exits_78(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("etl:\n  reorder_window: -1\n")
    assert main(["etl", "--once", "--config", str(cfg)]) == 78
    assert "etl.reorder_window" in capsys.readouterr().err


def test_etl_on_a_checkpoint_of_another_version_says_so_and_exits_78(tmp_path, capsys):
    """A downgrade: the checkpoint is another version's, not damaged -- one clear line and EX_CONFIG
    (not restarted by systemd, not set aside: that version can still read it), not a traceback."""
    import pyarrow as pa

    from fluxforge.etl.checkpoint import SCHEMA, CheckpointStore
    store = CheckpointStore(tmp_path / "data" / "state")
    store.path.parent.mkdir(parents=True)
    with pa.OSFile(str(store.path), "wb") as f, pa.ipc.new_file(f, SCHEMA.with_metadata({"format": "99"})) as w:
        w.write_table(SCHEMA.empty_table())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'data'}\n")
    assert main(["etl", "--once", "--config", str(cfg)]) == 78
    err = capsys.readouterr().err
    assert "checkpoint format '99'" in err and "another FluxForge version" in err and "Traceback" not in err
    assert store.path.is_file() and not list(store.path.parent.glob("*.unreadable-*"))
