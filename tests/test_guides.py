"""The guides' commands, run as a user runs them: `fedtar` installed from a wheel (conftest's
installed_fedtar), from an empty folder, in the order the page gives, with only paths and sizes made
small (each substitution is listed below).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL)


def shrink(text: str, folder: Path, sizes: dict[str, str]) -> str:
    """The page's text with its absolute paths under `folder` and its sizes replaced (each must occur)."""
    for old, new in sizes.items():
        assert old in text, f"the guide no longer says {old!r}: update this test's tiny sizes"
        text = text.replace(old, new)
    for root in ("/data/", "/models/", "/secure/"):
        text = text.replace(root, f"{folder}{root}")
    return text


def run_bash(script: str, cwd: Path, bin_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    """`script` under bash -euo pipefail with `bin_dir` (the wheel's venv) first on PATH."""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONWARNINGS": "ignore"}
    assert shutil.which("fedtar", path=env["PATH"]) == str(bin_dir / "fedtar")  # the wheel's, not a checkout's
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{script}\n--- stdout\n{result.stdout[-3000:]}\n" \
                                   f"--- stderr\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_mimic_walkthrough_runs_verbatim_at_a_tiny_size(tmp_path, installed_fedtar):
    page = DOCS / "guides" / "mimic-cxr.md"
    work = tmp_path / "empty"
    work.mkdir()
    (config,) = [b for b in blocks(page, "toml") if b.startswith("# mimic.toml")]
    # The page's config, at the tiny image size, and a model small enough for a test.
    (work / "mimic.toml").write_text(shrink(config, tmp_path, {"= 384": "= 32"}) +
                                     '"model.hidden_size" = 32\n"model.layers" = 1\n"model.heads" = 2\n')
    (script,) = [b for b in blocks(page, "bash") if "fedtar synth-mimic" in b]
    script = shrink(script, tmp_path, {"--studies 20000": "--studies 48", "--image-size 512": "--image-size 64",
                                       "--image-size 384": "--image-size 32", "--workers 8": "--workers 1",
                                       "--rounds 10": "--rounds 1 --strategies fedtar"})
    result = run_bash(script, work, installed_fedtar, timeout=1500)
    # What each step leaves: the sites, the base, the run, and the scores evaluate printed.
    assert len(list((tmp_path / "data" / "fedtar" / "mimic").glob("*/manifest.csv"))) == 4
    assert (tmp_path / "models" / "fedtar-mimic-base" / "model.safetensors").is_file()
    assert (work / "runs" / "simulate" / "runs" / "all" / "fedtar" / "seed-0" / "results.json").is_file()
    assert "cider" in result.stdout.lower()


@pytest.mark.slow
def test_the_ct_guide_runs_verbatim_at_a_tiny_size(tmp_path, installed_fedtar):
    from archives import build_ct_export

    page = DOCS / "guides" / "ct.md"
    work = tmp_path / "empty"
    work.mkdir()
    # The two sites' exports the page names, 10 patients × 2 CT studies each.
    for name, reports, first in (("ct-export", "reports.csv", 0), ("ct-export-2", "reports-2.csv", 10)):
        build_ct_export(tmp_path / "archive" / name, tmp_path / "archive" / reports, patients=10, first=first)
    (config,) = [b for b in blocks(page, "toml") if b.startswith("# ct.toml")]
    (work / "ct.toml").write_text(shrink(config, tmp_path, {'"data.volume_depth" = 32': '"data.volume_depth" = 8',
                                                             '"data.image_size" = 64': '"data.image_size" = 16'}) +
                                  '"model.hidden_size" = 32\n"model.layers" = 1\n"model.heads" = 2\n'
                                  '"federation.rounds" = 1\n')
    (script,) = [b for b in blocks(page, "bash") if "--modality ct" in b]
    script = shrink(script.replace("/archive/", f"{tmp_path}/archive/"), tmp_path,
                    {"--base /models/fedtar-ct-base --config ct.toml":
                     "--base /models/fedtar-ct-base --config ct.toml --strategies fedtar"})
    run_bash(script, work, installed_fedtar, timeout=1500)
    for site in ("ct-site1/site1", "ct-site2/site2"):
        manifest = (tmp_path / "data" / "fedtar" / site / "manifest.csv").read_text()
        assert ".nii" in manifest and "MRN-CT" not in manifest  # volumes, de-identified
    assert (tmp_path / "models" / "fedtar-ct-base" / "model.safetensors").is_file()
    assert (work / "runs" / "simulate" / "runs" / "all" / "fedtar" / "seed-0" / "results.json").is_file()


@pytest.mark.slow
def test_the_own_data_guide_runs_verbatim_at_a_tiny_size(tmp_path, installed_fedtar):
    """MIMIC-CXR-JPG with its reports in a separate tree (--reports) and MIMIC-IV's patients table, then a
    hospital's DICOM export with SR and text reports (--reports-csv), as the page lays them out."""
    from archives import build_hospital_export

    from data_adapters.mimic_rehearsal import RehearsalConfig, write_rehearsal

    page = DOCS / "guides" / "own-data.md"
    work = tmp_path / "empty"
    work.mkdir()
    data = tmp_path / "data"
    archive = write_rehearsal(tmp_path / "download", RehearsalConfig(studies=80, image_size=48, workers=1))
    jpg = data / "mimic-cxr-jpg" / "2.1.0"
    jpg.parent.mkdir(parents=True)
    shutil.move(archive.root, jpg)
    for report in list((jpg / "files").rglob("s*.txt")):  # the reports as PhysioNet ships them: another tree
        target = data / "mimic-cxr" / "2.1.0" / report.relative_to(jpg)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(report, target)
    patients = data / "mimiciv" / "3.1" / "hosp" / "patients.csv.gz"
    patients.parent.mkdir(parents=True)
    shutil.move(archive.patients, patients)
    hospital = tmp_path / "hospital"
    build_hospital_export(hospital)
    (tmp_path / "archive").mkdir()
    shutil.move(hospital / "reports.csv", tmp_path / "archive" / "reports.csv")  # its paths: reports/...
    shutil.move(hospital / "reports", tmp_path / "archive" / "reports")
    shutil.move(hospital, tmp_path / "archive" / "export")
    (script,) = [b for b in blocks(page, "bash") if "fedtar prepare dicom" in b]
    tiny = "--set model.hidden_size=32 --set model.layers=1 --set model.heads=2 --set data.image_size=32"
    script = shrink(script.replace("/archive/", f"{tmp_path}/archive/"), tmp_path, {
        "fedtar pretrain --data /data/fedtar/mimic --out /models/fedtar-base":
            f"fedtar pretrain --data /data/fedtar/mimic --out /models/fedtar-base --epochs 1 {tiny}",
        "--strategies fedtar,fedavg --rounds 10": f"--strategies fedtar --rounds 1 {tiny}"})
    result = run_bash(script, work, installed_fedtar, timeout=1500)
    manifests = list((data / "fedtar" / "mimic").glob("*/manifest.csv"))
    assert len(manifests) == 4
    assert sum(len(m.read_text().splitlines()) - 1 for m in manifests) > 40  # the reports were found under --reports
    assert (work / "runs" / "simulate" / "runs" / "all" / "fedtar" / "seed-0" / "results.json").is_file()
    assert "cider" in result.stdout.lower()
    site = (data / "fedtar" / "site1" / "site1" / "manifest.csv").read_text()  # OUT/<site id>/manifest.csv
    assert site.count("\n") >= 3 and "MRN" not in site and "St Example" not in site  # the export, de-identified
