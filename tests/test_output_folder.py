"""Issue 13, outputs: one owner at a time (lock with PID), a stamp saying what a folder holds, never
inside an input, names from user text stay in their folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fedtar.cli import main
from fedtar.operations.output_folder import LOCK_FILE, STAMP_FILE, OutputError, claim_output, safe_child

SYNTH = ["--sites", "1", "--patients", "2", "--visits", "2", "--image-size", "16"]


def test_a_live_holder_refuses_a_dead_holders_lock_is_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_FILE).write_text(json.dumps({"pid": live.pid, "command": "synth", "since": "now"}))
        with pytest.raises(OutputError, match=f"in use by process {live.pid} \\(fedtar synth"):
            with claim_output(out, "synth"):
                pass
    finally:
        live.kill()
        live.wait()
    with claim_output(out, "synth"):  # its process is gone: the lock is stale
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (out / LOCK_FILE).exists()


def test_synth_refuses_a_folder_another_command_wrote_unless_overwrite(tmp_path, capsys):
    prepared = tmp_path / "prepared"
    (prepared / "site1").mkdir(parents=True)
    (prepared / "site1" / "manifest.csv").write_text("real data\n")
    assert main(["synth", "--out", str(prepared), *SYNTH]) == 2
    assert "not empty and no fedtar command stamped it (site1)" in capsys.readouterr().err
    assert (prepared / "site1" / "manifest.csv").read_text() == "real data\n"
    (prepared / STAMP_FILE).write_text(json.dumps({"command": "prepare dicom"}))
    assert main(["synth", "--out", str(prepared), *SYNTH]) == 2
    assert "holds the output of `fedtar prepare dicom`" in capsys.readouterr().err
    assert (prepared / "site1" / "manifest.csv").read_text() == "real data\n"
    assert main(["synth", "--out", str(prepared), *SYNTH, "--overwrite"]) == 0
    assert json.loads((prepared / STAMP_FILE).read_text())["command"] == "synth"


def test_synth_twice_into_its_own_folder_writes_the_same_stamp(tmp_path):
    assert main(["synth", "--out", str(tmp_path / "f"), *SYNTH]) == 0
    first = (tmp_path / "f" / STAMP_FILE).read_bytes()
    assert main(["synth", "--out", str(tmp_path / "f"), *SYNTH]) == 0
    assert (tmp_path / "f" / STAMP_FILE).read_bytes() == first and b"config_sha256" in first


def test_evaluate_refuses_an_output_inside_its_inputs_and_a_foreign_file(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "fed"), *SYNTH]) == 0
    model = tmp_path / "model"
    model.mkdir()
    inside = tmp_path / "fed" / "site1" / "generated.csv"
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "fed"), "--out", str(inside)]) == 2
    assert "inside the input --data" in capsys.readouterr().err and not inside.exists()
    foreign = tmp_path / "notes.csv"
    foreign.write_text("my notes\n")
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "fed"), "--out", str(foreign)]) == 2
    assert "was not written by `fedtar evaluate`" in capsys.readouterr().err
    assert foreign.read_text() == "my notes\n"


def test_names_from_user_text_stay_in_their_folder(tmp_path, capsys):
    for bad in ("../../x", "..", "a/b", "/abs", ""):
        with pytest.raises(OutputError, match="not a plain name"):
            safe_child(tmp_path, bad, "--site-id")
    assert safe_child(tmp_path, "site-1", "--site-id") == tmp_path / "site-1"
    root = tmp_path / "archive"
    root.mkdir()
    assert main(["prepare", "dicom", "--root", str(root), "--out", str(tmp_path / "out"), "--site-id", "../../x",
                 "--secret", str(tmp_path / "secret"), "--no-progress"]) == 2
    assert "--site-id '../../x': not a plain name" in capsys.readouterr().err
    assert list(root.iterdir()) == [] and not (tmp_path / "out").exists()


def test_missing_dicom_root_is_named(tmp_path, capsys):
    missing = tmp_path / "no-such-export"
    assert main(["prepare", "dicom", "--root", str(missing), "--out", str(tmp_path / "out"),
                 "--secret", str(tmp_path / "secret"), "--no-progress"]) == 2
    assert f"--root {missing}: not found" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["world-readable", "inside-out", "folder"])
def test_a_site_secret_others_can_read_inside_out_or_a_folder_is_refused(tmp_path, capsys, case):
    root, out = tmp_path / "archive", tmp_path / "out"
    root.mkdir()
    secret = {"world-readable": tmp_path / "secret", "inside-out": out / "secret", "folder": tmp_path / "keys"}[case]
    if case == "world-readable":
        secret.write_text("ab" * 32 + "\n")
        secret.chmod(0o644)
    if case == "folder":
        secret.mkdir()
    assert main(["prepare", "dicom", "--root", str(root), "--out", str(out), "--secret", str(secret),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--secret {secret}:" in err
    assert {"world-readable": "readable by other users (mode 644)", "inside-out": "inside the output folder",
            "folder": "not a file"}[case] in err
    assert not out.exists()
