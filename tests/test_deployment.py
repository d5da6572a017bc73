"""Deployment on loopback: a real SuperLink with TLS and node authentication, real SuperNodes.

Started through `fedtar certs` and the server.toml / node.toml role files, on free
ports with a temporary FLWR_HOME and runtime dependency installation off. The run's
outcome is read with `flwr list` (not an exit code). Every process is stopped after
each test and checked gone.

The second half runs the `fedtar` command as the README's "Deploy" section does, from a
working folder of its own: the run config check, exit codes and their reasons, a node
waiting for its key, SIGTERM leaving nothing behind, and (slow) the whole walkthrough in
both start orders with FedTAR installed from a wheel into a fresh venv.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TINY_FED, toml_lines

from aggregator.flower_app import PATH_KEYS, app_pyproject, check_run_config, config_keys
from aggregator.local_simulation import free_port
from aggregator.superlink import (
    ServerRoleConfig,
    SuperLinkStartError,
    checkpoint_progress,
    flwr_env,
    flwr_json,
    listens_on,
    load_server_config,
    register_nodes,
    run_error,
    start_superlink,
    submit_run,
    wait_run,
)
from clients.supernode import NodeRoleConfig, NodeRunner, load_node_config, start_supernode
from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.cli import main
from fedtar.operations.flower_processes import stop
from fedtar.trust.audit import read_log, verify_chain

APP = Path(__file__).resolve().parents[1]
# Deadlines scale with measured progress: a run fails when neither a site's reply (audit
# log line) nor a round's checkpoint has appeared for STALL seconds; MAX_RUN only bounds a
# run that keeps moving (a busy 2-core machine is slow, not stuck).
STALL, MAX_RUN = 300.0, 3600.0


class Deployment:
    """Certificates, role files, a SuperLink and SuperNodes under one temporary folder."""

    def __init__(self, root: Path, base: Path, sites: int = 2):
        self.root, self.base, self.procs = root, base, []
        self.manifests = generate_federation(root / "data", SyntheticConfig(sites=sites, patients=8, visits=3,
                                                                           seed=9, image_size=32))
        args = ["certs", "--out", str(root / "certs"), "--host", "127.0.0.1", "--host", "localhost"]
        assert main(args + [a for i in range(sites) for a in ("--site", f"site{i + 1}")] + ["--site", "intruder"]) == 0
        self.port = free_port()
        keys = ", ".join(f'"certs/nodes/site{i + 1}.pub"' for i in range(sites))
        (root / "server.toml").write_text(
            f'[superlink]\nhost = "127.0.0.1"\nport = {self.port}\nnode_keys = [{keys}]\n'
            f'log_file = "state/superlink.log"\n')
        self.server, _ = load_server_config(root / "server.toml")
        self.tiny = root / "tiny.toml"
        self.tiny.write_text(toml_lines(TINY_FED))
        self.node_configs = []
        for i in range(sites):
            path = root / f"node{i + 1}.toml"
            path.write_text(f'[supernode]\nsuperlink = "127.0.0.1:{self.port}"\nca_cert = "certs/ca.crt"\n'
                            f'private_key = "certs/nodes/site{i + 1}"\nmanifest = "{self.manifests[i]}"\n'
                            f'base_dir = "{base}"\naudit_log = "audit/site{i + 1}.jsonl"\nport = {free_port()}\n')
            self.node_configs.append(load_node_config(path))
        self.env = {**flwr_env(self.server), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def start_link(self):
        """Start the SuperLink; a port taken since it was chosen (by any loopback socket on a
        busy machine) gets a new one, and the sites are pointed at it."""
        for attempt in range(3):
            try:
                self.link = start_superlink(self.server)
                break
            except SuperLinkStartError as e:
                if not e.port_in_use or attempt == 2:
                    raise
                self.port = self.server.port = free_port()
                for cfg in self.node_configs:
                    cfg.superlink = f"127.0.0.1:{self.port}"
        self.procs.append(self.link)
        register_nodes(self.server)

    def start_node(self, i: int, key: str | None = None):
        """Start a SuperNode on a port chosen now, again on another if that one was taken."""
        cfg = self.node_configs[i]
        log_file = self.root / f"node{i + 1}{'-' + Path(key).name if key else ''}.log"
        for _ in range(3):
            cfg = type(cfg)(**{**cfg.__dict__, "port": free_port(), **({"private_key": key} if key else {})})
            proc = start_supernode(cfg, env=self.env, log_file=log_file)
            self.procs.append(proc)
            if not self._lost_its_port(proc, cfg.port, log_file):
                return proc
        raise AssertionError(f"SuperNode {i + 1} could not bind a port: {log_file.read_text()[-500:]}")

    @staticmethod
    def _lost_its_port(proc, port: int, log_file: Path, timeout: float = 120.0) -> bool:
        """Wait until the node listens on its port (True if it exited because the port was taken)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if listens_on(proc.pid, port):
                return False
            if proc.poll() is not None:
                text = log_file.read_text(errors="replace").lower() if log_file.exists() else ""
                return "address already in use" in text or "failed to bind" in text
            time.sleep(0.2)
        return False

    def run(self, out: Path, **extra) -> int:
        # data-root "": a deployment has no federation folder on the server (the checkout's pyproject,
        # submitted here as a development app, names runs/synthetic for simulation)
        values = {"base-dir": str(self.base), "out-dir": str(out), "config": str(self.tiny), "data-root": "",
                  "meta.validation": "federated", "client.eval_meteor": False, "federation.rounds": 2, **extra}
        return submit_run(self.server, APP, values)

    def wait_online(self, count: int) -> None:
        """Until `count` SuperNodes are online at the SuperLink (a run that starts sooner sees fewer sites)."""
        def online() -> bool:
            nodes = flwr_json(self.server, "supernode", "list", self.server.connection, timeout=60)["nodes"]
            return sum(n["status"] == "online" for n in nodes) >= count

        wait_until(online, STALL, f"{count} SuperNodes online")

    def wait(self, run_id: int, out: Path) -> str:
        """The run's end state, failing only when it stops moving (see STALL)."""
        rounds = checkpoint_progress(out)
        logs = [Path(c.audit_log) for c in self.node_configs]

        def progress() -> tuple[int, ...]:
            return (rounds(), *(len(p.read_text().splitlines()) if p.exists() else 0 for p in logs))

        status = wait_run(self.server, run_id, timeout=MAX_RUN, progress=progress, stall_timeout=STALL)
        if status != "finished:completed":  # the ServerApp's error, while the SuperLink still answers
            print(f"run {run_id}: {status}: {run_error(self.server, run_id)}")
        return status

    def stop_all(self):
        for p in self.procs:
            stop(p)
        for p in self.procs:
            assert p.poll() is not None, "a Flower process is still running"
            deadline = time.monotonic() + 30  # nor anything alive in its process group (ServerApp, ClientApps)
            while live_members(p.pid):
                assert time.monotonic() < deadline, f"process group {p.pid} still has {live_members(p.pid)}"
                time.sleep(0.2)


def live_members(pgid: int) -> list[str]:
    """Processes of a process group that are not zombies (a zombie has exited; its parent may be
    an init that reaps late)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(text[: text.rindex(")") + 1])
    return members


@pytest.fixture
def deployment(tmp_path, tiny_base):
    d = Deployment(tmp_path, tiny_base)
    yield d
    d.stop_all()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {timeout:.0f} s"
        time.sleep(0.5)


def test_waiting_on_a_run_reads_its_status_when_it_ends_not_every_poll(monkeypatch):
    """Each status read is a `flwr list` process (about a second of CPU): a simulation that read it every
    second gave its sites three quarters of 2 cores. With a sign that the run ended (its log stream
    closed), the status is read at the start, then when that sign comes, not every poll."""
    from aggregator import superlink

    reads, t0 = [], time.monotonic()
    over = lambda: time.monotonic() - t0 > 1.0
    monkeypatch.setattr(superlink, "run_status", lambda cfg, run_id: reads.append(1) or
                        ("finished:completed" if over() else "running"))
    assert wait_run(ServerRoleConfig(), 7, timeout=30, poll=0.02, ended=over, status_every=60) == "finished:completed"
    assert len(reads) == 2  # not ~50
    reads.clear()
    t0 = time.monotonic()
    assert wait_run(ServerRoleConfig(), 7, timeout=30, poll=0.02) == "finished:completed"  # no sign: every poll
    assert len(reads) > 20


def test_the_superlink_certificate_names_the_hosts_sites_dial_and_loopback(tmp_path):
    """`fedtar server`'s own `flwr` calls reach a SuperLink on 0.0.0.0 over 127.0.0.1: without loopback
    in the certificate, the deploy guide's `fedtar certs --host <public name>` left the server unable to
    talk to its own SuperLink ("not ready within 60 s")."""
    from cryptography import x509

    from aggregator.certs import make_certificates

    made = make_certificates(tmp_path, ["fedtar.example-hospital.org", "10.1.2.3"], ["site1"])
    san = x509.load_pem_x509_certificate(made.server_cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fedtar.example-hospital.org", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3", "127.0.0.1", "::1"]


def test_tls_and_node_auth_run_completes_and_refuses_unknown_keys(deployment):
    d = deployment
    for name in ("ca.key", "server.key", "nodes/site1"):
        assert os.stat(d.root / "certs" / name).st_mode & 0o777 == 0o600
    d.start_link()
    d.start_node(0)
    d.start_node(1)
    intruder = d.start_node(1, key=str(d.root / "certs" / "nodes" / "intruder"))
    run_id = d.run(d.root / "run")
    assert d.wait(run_id, d.root / "run") == "finished:completed"
    listed = flwr_json(d.server, "list", d.server.connection, "--run-id", str(run_id))
    assert listed["runs"][0]["status"] == "finished:completed"
    results = json.loads((d.root / "run" / "results.json").read_text())
    assert results["status"] == "completed" and results["rounds_done"] == 2
    assert all(h["valid"] == 2 for h in results["history"])  # the intruder never took part
    assert results["metrics"]["num-examples"] > 0 and 0 <= results["metrics"]["bleu4"] <= 1
    # The unregistered key was refused: the SuperNode gave up with an error.
    deadline = time.monotonic() + STALL
    while intruder.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert intruder.returncode not in (None, 0)
    # Each site's audit log lists exactly the replies the server received from it.
    received = [json.loads(line) for line in (d.root / "run" / "received.jsonl").read_text().splitlines()]
    for i in range(2):
        log = read_log(d.node_configs[i].audit_log)
        node = log[0]["node_id"]
        assert [e["digest"] for e in log] == [r["digest"] for r in received if r["node_id"] == node]
        assert [e["kind"] for e in log] == ["train", "train", "evaluate"]


@pytest.mark.slow
def test_a_site_killed_in_round_2_does_not_stop_the_run(deployment):
    d = deployment
    d.start_link()
    d.start_node(0)
    victim = d.start_node(1)
    d.wait_online(2)  # min_sites 1 would let round 1 start with one site on a busy machine
    # 90 s: a round with both sites (each message a fresh ClientApp process) took ~45 s on a busy 2-core machine.
    run_id = d.run(d.root / "run", **{"federation.rounds": 3, "federation.min_sites": 1,
                                      "federation.round_timeout": 90.0})
    first = d.root / "run" / "checkpoints" / "round-0001.pt"
    wait_until(first.exists, STALL, f"{first} written")
    os.killpg(victim.pid, signal.SIGKILL)
    assert d.wait(run_id, d.root / "run") == "finished:completed"
    results = json.loads((d.root / "run" / "results.json").read_text())
    assert results["status"] == "completed" and results["rounds_done"] == 3
    assert results["history"][0]["valid"] == 2 and results["history"][-1]["valid"] == 1


@pytest.mark.slow
def test_server_killed_after_round_1_resumes_to_the_same_state(deployment):
    d = deployment
    d.start_link()
    d.start_node(0)
    d.start_node(1)
    reference = d.run(d.root / "reference")
    assert d.wait(reference, d.root / "reference") == "finished:completed"
    d.run(d.root / "run")
    first = d.root / "run" / "checkpoints" / "round-0001.pt"
    wait_until(first.exists, STALL, f"{first} written")
    stop(d.link, grace=0.1)  # the SuperLink and its ServerApp, mid-run
    d.start_link()            # same database: the sites' keys and connections come back
    resumed = d.run(d.root / "run", resume=True)
    assert d.wait(resumed, d.root / "run") == "finished:completed"
    results = json.loads((d.root / "run" / "results.json").read_text())
    assert results["status"] == "completed" and results["rounds_done"] == 2
    a = torch.load(d.root / "reference" / "final_state.pt")
    b = torch.load(d.root / "run" / "final_state.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_server_config_errors_are_clear(tmp_path):
    (tmp_path / "server.toml").write_text("[superlink]\nprot = 1\n")
    with pytest.raises(ValueError, match="unknown key.*prot"):
        load_server_config(tmp_path / "server.toml")
    cfg = ServerRoleConfig(ca_cert=str(tmp_path / "nope.crt"), flwr_home=str(tmp_path / "flwr"),
                           database=str(tmp_path / "state" / "db"))
    with pytest.raises(FileNotFoundError, match="fedtar certs"):
        start_superlink(cfg)
    assert not (tmp_path / "flwr").exists()  # nothing written before the check


def test_a_superlink_that_cannot_bind_is_not_taken_for_ready(deployment):
    """The port held by a connected loopback socket (what an ephemeral port on a busy machine
    does): uvicorn starts the application, fails to bind, and stops (the "lifespan stop" right
    after "start" in the SuperLink's log). `flwr list` exits 0 even then; readiness must not."""
    d = deployment
    with socket.socket() as listener, socket.socket() as holder:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        holder.bind(("127.0.0.1", 0))
        holder.connect(listener.getsockname())
        d.server.port = holder.getsockname()[1]
        with pytest.raises(SuperLinkStartError, match="address already in use") as e:
            start_superlink(d.server)
        assert e.value.port_in_use


# ---------------------------------------------------------------------------------------------
# The README's "Deploy" section as a hospital IT team runs it: the `fedtar` command in a working
# folder of its own, role files written there, processes stopped the way a process manager does.

THIS_FEDTAR = [sys.executable, "-m", "fedtar.cli"]


def quiet_env(bin_dir: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if bin_dir is not None:  # the venv's commands first: Flower starts its helpers by name
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def processes_under(root: Path) -> list[str]:
    """Live processes whose command line names a path under `root` (the role files, certificates and
    state of one walkthrough): what would be left behind."""
    import psutil

    left = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if str(root) in cmd and p.info["status"] != psutil.STATUS_ZOMBIE and p.pid != os.getpid():
            left.append(f"{p.pid} {cmd[:200]}")
    return left


class Walkthrough:
    """Certificates, role files and data in an empty folder; `fedtar` commands run from it."""

    def __init__(self, root: Path, base: Path, fedtar: list[str], env: dict[str, str], sites: int = 2,
                 keys_registered: int | None = None):
        self.root, self.fedtar, self.env, self.procs = root, fedtar, env, {}
        root.mkdir(parents=True, exist_ok=True)
        # 1. the coordinating site: a CA, the SuperLink certificate, one key per site
        self.cli("certs", "--out", "certs", "--host", "127.0.0.1", "--host", "localhost",
                 *[a for i in range(sites) for a in ("--site", f"site{i + 1}")])
        self.port = free_port()
        keys = ", ".join(f'"certs/nodes/site{i + 1}.pub"' for i in range(sites if keys_registered is None
                                                                           else keys_registered))
        (root / "server.toml").write_text(f'[superlink]\nhost = "127.0.0.1"\nport = {self.port}\n'
                                          f'node_keys = [{keys}]\nstart_timeout = 120.0\n')
        (root / "fedtar.toml").write_text(toml_lines(TINY_FED))  # the model's size: tiny, for a test
        # 2. each site: its manifest (here synthetic), the vetted base's hash, its node.toml
        manifests = generate_federation(root / "data", SyntheticConfig(sites=sites, patients=8, visits=3, seed=9,
                                                                       image_size=32))
        self.base = base
        base_hash = self.cli("base-hash", str(base)).stdout.strip()
        for i in range(sites):
            (root / f"node{i + 1}.toml").write_text(
                f'[supernode]\nsuperlink = "127.0.0.1:{self.port}"\nca_cert = "certs/ca.crt"\n'
                f'private_key = "certs/nodes/site{i + 1}"\nmanifest = "{manifests[i]}"\nbase_dir = "{base}"\n'
                f'audit_log = "audit/site{i + 1}.jsonl"\nlog_file = "logs/node{i + 1}.log"\nport = {free_port()}\n'
                f'base_sha256 = "{base_hash}"\n')

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.fedtar, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"fedtar {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """A long-running `fedtar` command; its console (stdout and stderr) goes to NAME.console."""
        console = open(self.root / f"{name}.console", "wb")
        proc = subprocess.Popen([*self.fedtar, *args], cwd=self.root, env=self.env, stdout=console,
                                stderr=subprocess.STDOUT)
        console.close()
        self.procs[name] = proc
        return proc

    def node(self, i: int) -> subprocess.Popen:
        return self.start(f"node{i}", "node", "--config", f"node{i}.toml")

    def server_run(self, *run_config: str) -> subprocess.Popen:
        args = ["--run-config", f"base-dir={self.base}", "--run-config", "config=fedtar.toml",
                "--run-config", "meta.validation=federated"]
        for item in run_config:
            args += ["--run-config", item]
        return self.start("server", "server", "--config", "server.toml", "--run", *args)

    def console(self, name: str) -> str:
        path = self.root / f"{name}.console"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_console(self, name: str, text: str, timeout: float = STALL) -> None:
        proc = self.procs[name]
        wait_until(lambda: text in self.console(name) or proc.poll() is not None, timeout,
                   f"{text!r} on the console of {name}")
        assert text in self.console(name), f"{name} exited ({proc.returncode}) before {text!r}:\n" \
                                           f"{self.console(name)[-3000:]}"

    def terminate(self, name: str, timeout: float = 60.0) -> int:
        """SIGTERM, as `kill`, systemd or a container stop sends it; the exit code."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        left = processes_under(self.root)
        for line in left:  # never leave anything behind, even when the test failed
            try:
                os.kill(int(line.split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not left, f"processes left behind: {left}"


@pytest.fixture
def walkthrough(tmp_path, tiny_base):
    w = Walkthrough(tmp_path / "hospital-it", tiny_base, THIS_FEDTAR, quiet_env())
    yield w
    w.close()


def test_run_config_declares_every_config_key_and_refuses_bad_ones_before_anything_starts(tmp_path, tiny_base):
    declared = read_toml_text(app_pyproject())["tool"]["flwr"]["app"]["config"]
    assert set(declared) == set(PATH_KEYS) | set(config_keys())  # generated from the config dataclasses
    values, cfg = check_run_config({"base-dir": str(tiny_base), "out-dir": "run", "meta.validation": "federated",
                                    "data.image_size": 32, "train.lr": 1, "data.hu_windows": "lung,bone"},
                                   cwd=tmp_path)
    assert values["data.image_size"] == 32 and values["train.lr"] == 1.0 and isinstance(values["train.lr"], float)
    assert values["data.hu_windows"] == "lung,bone" and values["out-dir"] == str(tmp_path / "run")
    assert cfg.data.image_size == 32
    (tmp_path / "server.toml").write_text('[superlink]\nport = 1\n')  # never reached: the check comes first
    cases = {"data.imagesize=32": "unknown run-config key 'data.imagesize': did you mean data.image_size",
             "data.image_size=0": "data.image_size: 0 is not allowed (want an integer >= 1)",
             "federation.strategy=fedbest": "want one of fedtar, fedavg",
             "meta.validation=server": "meta.validation=federated",
             "colour=red": "unknown run-config key 'colour'"}
    for item, expected in cases.items():
        done = subprocess.run([*THIS_FEDTAR, "server", "--config", "server.toml", "--run", "--run-config",
                               f"base-dir={tiny_base}", "--run-config", item], cwd=tmp_path, env=quiet_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and expected in done.stderr, (item, done.stderr[-1000:])
    assert not (tmp_path / "state").exists()  # no SuperLink was started, nothing was written


def read_toml_text(text: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def test_server_exit_codes_and_reasons(walkthrough):
    """A run that stops before its rounds and a ServerApp that fails both exit 1 with the reason."""
    w = walkthrough
    server = w.server_run("out-dir=run", "federation.rounds=1", "federation.node_wait=2")
    assert server.wait(STALL) == 1
    out = w.console("server")
    assert "0 of 1 rounds: stopped: only 0 of the 2 sites needed connected within 2s" in out, out[-3000:]
    # The same folder again: the ServerApp refuses a folder holding an earlier run (it raises).
    server = w.server_run("out-dir=run", "federation.rounds=1", "federation.node_wait=2")
    assert server.wait(STALL) == 1
    out = w.console("server")
    assert "finished:failed: ValueError:" in out and "holds an earlier run (results.json)" in out, out[-3000:]
    assert not processes_under(w.root)


def test_sigterm_to_a_running_server_stops_every_flower_process(walkthrough):
    """`fedtar server --run` stopped mid-run (SIGTERM, as systemd sends it): the SuperLink, its
    SuperExec and the ServerApp are stopped; the exit code is 128 + 15 (the run did not complete)."""
    w = walkthrough
    w.server_run("out-dir=run", "federation.node_wait=600")
    w.wait_console("server", "submitted run")
    wait_until(lambda: any("flwr-serverapp" in p for p in processes_under(w.root)), STALL, "the ServerApp running")
    assert w.terminate("server") == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in w.console("server")
    assert not processes_under(w.root), processes_under(w.root)


def test_a_node_waits_for_its_key_and_sigterm_leaves_no_process(walkthrough):
    """Site 2's key is registered only after its node started: the node is refused, says so, retries
    with a growing delay and joins once the key is registered. SIGTERM to `fedtar node` and to
    `fedtar server` stops every Flower process they started."""
    w = walkthrough
    (w.root / "server.toml").write_text((w.root / "server.toml").read_text().replace(
        ', "certs/nodes/site2.pub"', ""))
    server = w.start("server", "server", "--config", "server.toml")  # serves, no run
    w.wait_console("server", "SuperLink running at")
    node = w.node(2)
    w.wait_console("node2", "this node's key is not registered there")
    w.wait_console("node2", "restarting in 2 s")  # the second refusal: the delay doubled
    # What the coordinating site does once it has the key: the deploy guide's command, as the page gives it.
    page = (APP / "docs" / "guides" / "deploy.md").read_text(encoding="utf-8")
    (command,) = re.findall(r"`(FLWR_HOME=\S+ flwr supernode register [^`]+)`", page)
    done = subprocess.run(["bash", "-c", command.replace("site3", "site2")], cwd=w.root, env=w.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "error" not in done.stdout.lower(), done.stdout + done.stderr
    w.wait_console("node2", "connected to the SuperLink at")
    log_text = (w.root / "logs" / "node2.log").read_text()
    assert "fedtar-node: connected to the SuperLink" in log_text and "Starting Flower SuperNode" in log_text
    flower = [p for p in processes_under(w.root) if "flower-supernode" in p or "flower-superexec" in p]
    assert flower, "the node's Flower processes should be running"
    assert w.terminate("node2") == 0
    assert "fedtar-node: exit 0: stopped (SIGTERM)" in w.console("node2")
    assert not [p for p in processes_under(w.root) if "node2" in p or "site2" in p or "supernode" in p]
    assert w.terminate("server") == 0
    assert not processes_under(w.root), processes_under(w.root)
    assert node.returncode == 0 and server.returncode == 0


def test_node_exit_codes_for_what_no_restart_fixes(walkthrough):
    """A node key Flower cannot read exits 3 at once with the reason (flower-supernode prints its code
    302 but exits 1); with give_up_after, a SuperLink that never answers ends the node with 4."""
    w = walkthrough
    (w.root / "certs" / "nodes" / "site1").write_text("not a key\n")
    assert w.node(1).wait(STALL) == 3
    assert "the node key is not a valid elliptic-curve private key (private_key) (Flower exit code 302)" in \
        w.console("node1")
    toml = w.root / "node2.toml"
    toml.write_text(toml.read_text() + "give_up_after = 3.0\n")  # nothing listens on the SuperLink's port
    assert w.node(2).wait(STALL) == 4
    assert "exit 4: the SuperLink was not reachable; not connected for 3 s (give_up_after)" in w.console("node2")
    assert not processes_under(w.root)


def test_node_lines_for_refusals_and_replies(tmp_path):
    """FedTAR's own node lines: a refused key, an untrusted app, a refusal in the audit log (foreign
    base, pin breach) with its reason, a reply sent."""
    cfg = NodeRoleConfig(audit_log=str(tmp_path / "audit.jsonl"), log_file=str(tmp_path / "node.log"),
                         trusted_entities="trust.yaml")
    console = io.StringIO()
    runner = NodeRunner(cfg, console=console)
    flower_output = (b"\x1b[92mINFO \x1b[0m:      SuperNode ID: 42\n"
                     b"INFO :      [RUN 7, ROUND 1]\nINFO :      Receiving: train message (ID: ab)\n"
                     b"ERROR :     FAB verification failed: the provided trusted entities could not verify the FAB.\n"
                     b"[code: 2004] Failed to activate SuperNode.\n")
    attempt: dict = {}
    (tmp_path / "audit.jsonl").write_text(
        json.dumps({"run_id": 7, "round": 1, "kind": "refused-train",
                    "reason": "base /b has sha256 aa, the node vetted bb"}) + "\n"
        + json.dumps({"run_id": 7, "round": 2, "kind": "train", "arrays": [{}, {}], "total_bytes": 2**20,
                      "digest": "0123456789abcdef"}) + "\n")
    runner._pump(io.BytesIO(flower_output), attempt)
    text = console.getvalue()
    assert "SuperNode ID: 42" in text and "\x1b[" not in text  # Flower's lines, without colour codes
    for line in ("connected to the SuperLink at 127.0.0.1:9093 as node 42",
                 "run 7, round 1: train message received",
                 "refused run 7, round 1: untrusted app (the app bundle is not signed by a key in trust.yaml)",
                 "refused by the SuperLink: this node's key is not registered there (yet)",
                 "run 7, round 1: refused the train message: base /b has sha256 aa, the node vetted bb",
                 "run 7, round 2: train reply sent (2 tensors, 1.00 MiB, sha256 0123456789ab"):
        assert f"fedtar-node: {line}" in text, (line, text)
    assert attempt["connected"]
    runner._log.close()
    assert (tmp_path / "node.log").read_text() == text  # the log file holds what the console showed


@pytest.mark.slow
@pytest.mark.parametrize("order", ["nodes-first", "server-first"])
def test_readme_walkthrough_from_an_empty_folder_with_the_wheel(tmp_path, tiny_base, installed_fedtar, order):
    """The Deploy section in order, with FedTAR installed from a wheel and nothing else in the working
    folder: either start order completes both rounds, exit codes and consoles say so, the audit
    chains verify, and SIGTERM to the nodes leaves no process behind."""
    w = Walkthrough(tmp_path / "hospital-it", tiny_base, [str(installed_fedtar / "fedtar")], quiet_env(installed_fedtar))
    try:
        started = time.monotonic()
        run_config = ("out-dir=run1", "federation.rounds=2")
        if order == "nodes-first":
            w.node(1), w.node(2)
            for name in ("node1", "node2"):  # the SuperLink is not there yet: Flower retries, the node says so
                w.wait_console(name, "not reachable yet")
            server = w.server_run(*run_config)
        else:
            server = w.server_run(*run_config)
            w.wait_console("server", "submitted run")  # federation.node_wait counts from here
            w.node(1), w.node(2)
        code = server.wait(MAX_RUN)
        seconds = time.monotonic() - started
        out = w.console("server")
        assert code == 0, out[-4000:] + w.console("node1")[-3000:]
        assert "the installed FedTAR app" in out and ": finished:completed; 2 of 2 rounds" in out, out[-3000:]
        assert "round 1 of 2 checkpointed" in out, out[-3000:]  # progress while the run goes on
        results = json.loads((w.root / "run1" / "results.json").read_text())
        assert results["status"] == "completed" and results["rounds_done"] == 2
        for i in (1, 2):
            console = w.console(f"node{i}")
            for line in ("fedtar-node: connected to the SuperLink", ": train message received",
                         "round 1: train reply sent", "round 2: train reply sent", "evaluate reply sent"):
                assert line in console, (i, line, console[-3000:])
            assert verify_chain(w.root / "audit" / f"site{i}.jsonl") == []
            assert "fedtar-node: connected" in (w.root / "logs" / f"node{i}.log").read_text()
            assert w.terminate(f"node{i}") == 0
            assert "exit 0: stopped (SIGTERM)" in w.console(f"node{i}")
        assert not processes_under(w.root), processes_under(w.root)
        print(f"{order}: run and stop took {seconds:.0f} s")
    finally:
        w.close()
