"""The guides' commands, run as a user runs them: `fedtar` installed from a wheel (conftest's
installed_fedtar), from an empty folder, in the order the page gives, with only paths and sizes made
small (each substitution is listed below).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
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


def commands(script: str) -> list[str]:
    """A bash block's commands, one per entry: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", "", script)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.slow
def test_the_deploy_guide_runs_verbatim_at_a_tiny_size(tmp_path, installed_fedtar):
    """The hospital deployment as the page gives it: its bash block's commands in order, its server.toml and
    node.toml, one folder for the coordinating site and one per hospital (each holding only what the page
    says to send it), nodes started first. Made small or local: the host name (localhost: the certificate
    must name what nodes dial), ports (free ones), absolute paths (under tmp), the base's size, rounds."""
    from test_deployment import processes_under, quiet_env, wait_until

    from aggregator.local_simulation import free_port
    from data_adapters.synthetic import SyntheticConfig, generate_federation
    from fedtar.trust.audit import verify_chain

    page = DOCS / "guides" / "deploy.md"
    (script,) = [b for b in blocks(page, "bash") if "fedtar certs" in b]
    (server_toml,) = [b for b in blocks(page, "toml") if b.startswith("# server.toml")]
    (node_toml,) = [b for b in blocks(page, "toml") if b.startswith("# node.toml")]
    certs, pretrain, base_hash, node, server, echo, verify, stop = commands(script)
    assert (echo, stop) == ("echo $?", "systemctl stop fedtar-node"), "the page's steps changed: update this test"
    port, host = free_port(), "fedtar.example-hospital.org"
    coordinator, env = tmp_path / "coordinator", quiet_env(installed_fedtar)
    coordinator.mkdir()

    def local(text: str, site: str = "site1") -> str:
        """The page's text with this test's host, ports and folders."""
        text = text.replace(host, "localhost").replace(":9093", f":{port}").replace("port = 9093", f"port = {port}")
        text = text.replace('host = "0.0.0.0"', 'host = "127.0.0.1"').replace("site1", site)
        for root in ("/models/", "/data/", "/srv/"):
            text = text.replace(root, f"{tmp_path}{root}")
        return text.replace("/var/log/", f"{tmp_path / site}/var/log/")

    def run(command: str, cwd: Path) -> str:
        return run_bash(command, cwd, installed_fedtar, timeout=900).stdout

    # 1. The coordinating site: certificates, server.toml, the base (small: a 32-wide model on 32 px images).
    run(local(certs), coordinator)
    (coordinator / "server.toml").write_text(local(server_toml))
    tiny = " --epochs 1 --set model.hidden_size=32 --set model.layers=1 --set model.heads=2 --set data.image_size=32"
    run(local(pretrain) + tiny, coordinator)
    # 2. Each hospital: what the page says to send it, its prepared manifest, its node.toml with the hash it
    #    computed itself, and its node started (before the SuperLink, as the page orders it).
    synthetic = generate_federation(tmp_path / "prepared", SyntheticConfig(sites=2, patients=10, visits=3, seed=5,
                                                                            image_size=32))
    nodes = {}
    for i, manifest in enumerate(synthetic, start=1):
        site = tmp_path / f"site{i}"
        (site / "certs" / "nodes").mkdir(parents=True)
        shutil.copy(coordinator / "certs" / "ca.crt", site / "certs" / "ca.crt")
        shutil.copy(coordinator / "certs" / "nodes" / f"site{i}", site / "certs" / "nodes" / f"site{i}")
        shutil.copytree(manifest.parent, tmp_path / "data" / "fedtar" / f"site{i}" / f"site{i}")
        digest = run(local(base_hash, f"site{i}"), site).strip()
        assert re.fullmatch(r"[0-9a-f]{64}", digest), digest
        text = re.sub(r"port = 9094", f"port = {free_port()}", local(node_toml, f"site{i}"))
        (site / "node.toml").write_text(re.sub(r'base_sha256 = "<[^"]*>"', f'base_sha256 = "{digest}"', text))
        with open(site / "node.console", "wb") as console:
            nodes[i] = subprocess.Popen(["bash", "-c", f"exec {local(node, f'site{i}')}"], cwd=site,
                                        stdout=console, stderr=subprocess.STDOUT, env=env)
    try:
        # 3. The coordinating site starts the SuperLink and runs the federation (1 round instead of 10).
        assert "federation.rounds=10" in server
        done = subprocess.run(["bash", "-c", local(server).replace("federation.rounds=10", "federation.rounds=1")],
                              cwd=coordinator, env=env, capture_output=True, text=True, timeout=1800, check=False)
        consoles = {i: (tmp_path / f"site{i}" / "node.console").read_text(errors="replace") for i in nodes}
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{consoles[1][-3000:]}"
        assert ": finished:completed; 1 of 1 rounds" in done.stdout, done.stdout[-3000:]
        results = json.loads((tmp_path / "srv" / "fedtar" / "run1" / "results.json").read_text())
        assert results["status"] == "completed" and results["rounds_done"] == 1
        # 4. Each site: the audit log's chain verifies (the page's command), then the node stops (SIGTERM,
        #    what systemctl stop sends) with nothing left behind.
        for i, proc in nodes.items():
            assert "round 1: train reply sent" in consoles[i], consoles[i][-3000:]
            assert run(local(verify, f"site{i}"), tmp_path / f"site{i}").strip() == "intact"
            assert verify_chain(tmp_path / f"site{i}" / "var" / "log" / "fedtar" / "audit.jsonl") == []
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        wait_until(lambda: not processes_under(tmp_path), 30, "every process of the deployment stopped")
    finally:
        for proc in nodes.values():
            if proc.poll() is None:
                proc.kill()


@pytest.mark.slow
def test_the_simulate_guides_flwr_run_block_runs_verbatim_from_a_checkout(tmp_path, installed_fedtar):
    """`flwr run .` from a copy of the checkout, as the simulate guide gives it, at a tiny size; then the
    local SuperLink that `flwr run` leaves running is stopped, as the page says to."""
    import psutil

    page = DOCS / "guides" / "simulate.md"
    (script,) = [b for b in blocks(page, "bash") if "flwr run ." in b]
    checkout = tmp_path / "checkout"
    shutil.copytree(DOCS.parent, checkout, ignore=shutil.ignore_patterns(
        ".git", "runs", "state", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".venv", "site"))
    tiny = "--set model.hidden_size=32 --set model.layers=1 --set model.heads=2 --set data.image_size=32"
    script = shrink(script, tmp_path, {"fedtar pretrain --out runs/base": f"fedtar pretrain --out runs/base --epochs 1 {tiny}",
                                       "fedtar synth --out runs/synthetic": "fedtar synth --out runs/synthetic "
                                                                            "--patients 6 --image-size 32",
                                       "federation.rounds=3": "federation.rounds=1"})
    started = time.time()
    try:
        result = run_bash(script, checkout, installed_fedtar, timeout=1500)
        assert '"finished:completed"' in result.stdout, result.stdout[-3000:]
        results = json.loads((checkout / "runs" / "flwr" / "results.json").read_text())  # the app's out-dir
        assert results["status"] == "completed" and results["rounds_done"] == 1
    finally:  # "flwr run leaves a local SuperLink running in the background: stop it when done"
        home = str(checkout / "runs" / "flwr-home")  # the page's FLWR_HOME: what `flwr run` started has it
        left = []
        for p in psutil.process_iter(["create_time"]):
            try:
                if p.info["create_time"] >= started - 1 and p.environ().get("FLWR_HOME") == home:
                    left.append(p)
            except psutil.Error:
                pass
        superlinks = [p for p in left if "flower-superlink" in " ".join(p.cmdline())]
        for p in left:
            p.terminate()
        _, alive = psutil.wait_procs(left, timeout=30)
    assert superlinks and not alive, (superlinks, alive)  # the page says one is left; it stops when told


PARSE_ONLY = """
import argparse, os, runpy, sys
parse = argparse.ArgumentParser.parse_args
def parse_then_stop(self, *args, **kwargs):
    parse(self, *args, **kwargs)  # a bad option or value exits 2 here, naming it
    raise SystemExit(0)
argparse.ArgumentParser.parse_args = parse_then_stop
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # as `python SCRIPT` puts its folder first
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_benchmarks_pages_commands_name_real_files_and_options(tmp_path):
    """The benchmarks page runs for hours, so it is not run here; what it says is checked: every sweep file
    it names loads, and every script and `fedtar` command it gives accepts the options it shows (each
    script's own parser, stopped after parsing)."""
    import shlex
    import sys

    from aggregator.experiment import load_sweep
    from fedtar.cli import build_parser

    root = DOCS.parent
    page = DOCS / "guides" / "benchmarks.md"
    lines = [c.rstrip("&").strip() for b in blocks(page, "bash") for c in commands(b)]
    assert len(lines) >= 15, lines
    for line in lines:
        words = [w for w in shlex.split(line) if "=" not in w or w.startswith("-")]  # drop VAR=value prefixes
        if words[0] == "fedtar":
            args = build_parser().parse_args(words[1:])  # exits 2 on an unknown option
            if getattr(args, "config", None) and words[1] == "experiment":
                load_sweep(root / args.config)
            continue
        assert words[0] == "python" and (root / words[1]).is_file(), line
        done = subprocess.run([sys.executable, "-c", PARSE_ONLY, *words[1:]], cwd=root, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{line}: {done.stderr[-1500:]}"
