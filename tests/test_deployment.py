"""Deployment on loopback: a real SuperLink with TLS and node authentication, real SuperNodes.

Started through `fedtar certs` and the server.toml / node.toml role files, on free
ports with a temporary FLWR_HOME and runtime dependency installation off. The run's
outcome is read with `flwr list` (not an exit code). Every process is stopped after
each test and checked gone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aggregator.superlink import (
    ServerRoleConfig,
    SuperLinkStartError,
    checkpoint_progress,
    flwr_env,
    flwr_json,
    listens_on,
    load_server_config,
    register_nodes,
    start_superlink,
    stop,
    submit_run,
    wait_run,
)
from clients.supernode import load_node_config, start_supernode
from conftest import TINY_FED, toml_lines
from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.audit import read_log
from fedtar.cli import main

APP = Path(__file__).resolve().parents[1]
# Deadlines scale with measured progress: a run fails when neither a site's reply (audit
# log line) nor a round's checkpoint has appeared for STALL seconds; MAX_RUN only bounds a
# run that keeps moving (a busy 2-core machine is slow, not stuck).
STALL, MAX_RUN = 300.0, 3600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        values = {"base-dir": str(self.base), "out-dir": str(out), "config": str(self.tiny),
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

        return wait_run(self.server, run_id, timeout=MAX_RUN, progress=progress, stall_timeout=STALL)

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
