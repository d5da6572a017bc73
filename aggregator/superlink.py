"""The coordinating site's role: start Flower's SuperLink with TLS and node authentication,
register the sites' keys, submit the FedTAR app and follow it to its end state.

`fedtar server --config server.toml` is a thin wrapper around ``flower-superlink`` and
the ``flwr`` CLI (see README, "Deploy"). Every wait has a deadline; the run's outcome
is read from ``flwr list`` (``flwr run`` exits 0 even when a run fails).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedtar.config import load_dataclass_toml

log = logging.getLogger(__name__)
FINISHED_PREFIX = "finished:"


@dataclass
class ServerRoleConfig:
    """`[superlink]` in server.toml (paths relative to the file)."""

    host: str = "127.0.0.1"            # the address sites connect to (Fleet API) and `flwr` uses
    port: int = 9093
    ca_cert: str = "certs/ca.crt"
    cert: str = "certs/server.crt"
    key: str = "certs/server.key"
    node_keys: list[str] = field(default_factory=list)  # the sites' public keys (OpenSSH .pub)
    database: str = "state/superlink.db"  # SuperLink state on disk (runs, registered nodes)
    flwr_home: str = "state/flwr"       # where the `flwr` CLI connection is written
    connection: str = "fedtar"
    insecure: bool = False              # plain HTTP, no node auth: only for a closed test network
    start_timeout: float = 60.0         # seconds for the SuperLink to answer
    run_timeout: float = 24 * 3600.0    # seconds for a submitted run to finish
    log_file: str = ""

    def path(self, value: str, base: Path) -> str:
        return str((base / value).resolve()) if value and not Path(value).is_absolute() else value


def load_server_config(path: str | Path) -> tuple[ServerRoleConfig, Path]:
    """The [superlink] table of server.toml, with paths resolved against the file's folder."""
    path = Path(path)
    cfg = load_dataclass_toml(path, "superlink", ServerRoleConfig)
    base = path.parent
    for name in ("ca_cert", "cert", "key", "database", "flwr_home", "log_file"):
        setattr(cfg, name, cfg.path(getattr(cfg, name), base))
    cfg.node_keys = [cfg.path(k, base) for k in cfg.node_keys]
    return cfg, base


def flwr_env(cfg: ServerRoleConfig) -> dict[str, str]:
    """Environment for Flower's processes: our FLWR_HOME, no telemetry, no dependency installs."""
    env = dict(os.environ)
    env.update({"FLWR_HOME": cfg.flwr_home, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"})
    return env


def superlink_command(cfg: ServerRoleConfig) -> list[str]:
    cmd = [flower_tool("flower-superlink"), "--host", cfg.host, "--port", str(cfg.port), "--database", cfg.database,
           "--disable-runtime-dependency-installation"]
    if cfg.insecure:
        return cmd + ["--insecure"]
    for name in ("ca_cert", "cert", "key"):
        if not Path(getattr(cfg, name)).is_file():
            raise FileNotFoundError(f"{getattr(cfg, name)}: missing ({name}); create it with `fedtar certs`")
    cmd += ["--ssl-ca-certfile", cfg.ca_cert, "--ssl-certfile", cfg.cert, "--ssl-keyfile", cfg.key,
            "--enable-supernode-auth"]
    if cfg.log_file:
        cmd += ["--log-file", cfg.log_file]
    return cmd


def flower_tool(name: str) -> str:
    """A Flower executable next to this Python (a venv), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else name


def write_connection(cfg: ServerRoleConfig) -> Path:
    """FLWR_HOME/config.toml with one connection to this SuperLink, the default one."""
    home = Path(cfg.flwr_home)
    home.mkdir(parents=True, exist_ok=True)
    address = f"{'127.0.0.1' if cfg.host in ('0.0.0.0', '::') else cfg.host}:{cfg.port}"
    lines = ["[superlink]", f'default = "{cfg.connection}"', "", f"[superlink.{cfg.connection}]",
             f'address = "{address}"']
    lines += ["insecure = true"] if cfg.insecure else [f'root-certificates = "{cfg.ca_cert}"']
    path = home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def flwr(cfg: ServerRoleConfig, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run the `flwr` CLI against this SuperLink's connection."""
    return subprocess.run([flower_tool("flwr"), *args], env=flwr_env(cfg), capture_output=True, text=True,
                          timeout=timeout)


def start_superlink(cfg: ServerRoleConfig) -> subprocess.Popen:
    """Start the SuperLink, write the CLI connection, wait until it answers (or raise)."""
    command = superlink_command(cfg)  # checks the certificate files before anything is written
    Path(cfg.database).parent.mkdir(parents=True, exist_ok=True)
    write_connection(cfg)
    proc = subprocess.Popen(command, env=flwr_env(cfg), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + cfg.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"flower-superlink exited with code {proc.returncode} at start "
                               f"(see {cfg.log_file or 'its output'})")
        if flwr(cfg, "list", cfg.connection, "--format", "json", timeout=30).returncode == 0:
            log.info("SuperLink up at %s:%d (%s)", cfg.host, cfg.port,
                     "insecure" if cfg.insecure else "TLS + node auth")
            return proc
        time.sleep(0.5)
    stop(proc)
    raise TimeoutError(f"SuperLink did not answer within {cfg.start_timeout:.0f} s")


def register_nodes(cfg: ServerRoleConfig) -> list[str]:
    """Register each site's public key (an already registered key is fine). Returns the keys added."""
    added = []
    for key in cfg.node_keys:
        out = flwr(cfg, "supernode", "register", key, cfg.connection)
        text = (out.stdout + out.stderr).lower()
        if out.returncode != 0 and "already" not in text:
            raise RuntimeError(f"registering {key} failed: {(out.stdout + out.stderr).strip()[-500:]}")
        if out.returncode == 0:
            added.append(key)
    log.info("registered %d of %d site key(s)", len(added), len(cfg.node_keys))
    return added


def submit_run(cfg: ServerRoleConfig, app: str | Path, run_config: dict[str, object] | None = None) -> int:
    """`flwr run APP CONNECTION` with the given run config; returns the run id."""
    args = ["run", str(app), cfg.connection, "--format", "json"]
    if run_config:
        args += ["--run-config", " ".join(f"{k}={_toml_value(v)}" for k, v in run_config.items())]
    out = flwr(cfg, *args, timeout=300)
    try:
        return int(json.loads(out.stdout)["run-id"])
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(f"flwr run failed: {(out.stdout + out.stderr).strip()[-800:]}") from None


def parse_run_config(pairs: dict[str, str]) -> dict[str, object]:
    """Command-line KEY=VALUE strings typed as TOML would type them (bool, int, float, str)."""
    out: dict[str, object] = {}
    for key, value in pairs.items():
        if value.lower() in ("true", "false"):
            out[key] = value.lower() == "true"
            continue
        for kind in (int, float):
            try:
                out[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def run_status(cfg: ServerRoleConfig, run_id: int) -> str:
    out = flwr(cfg, "list", cfg.connection, "--run-id", str(run_id), "--format", "json", timeout=60)
    try:
        runs = json.loads(out.stdout)["runs"]
        return str(runs[0]["status"])
    except (ValueError, KeyError, IndexError, TypeError):
        return "unknown"


def wait_run(cfg: ServerRoleConfig, run_id: int, timeout: float | None = None, poll: float = 2.0) -> str:
    """Poll `flwr list` until the run is finished (its status) or the deadline ("timeout")."""
    deadline = time.monotonic() + (timeout or cfg.run_timeout)
    status = "unknown"
    while time.monotonic() < deadline:
        status = run_status(cfg, run_id)
        if status.startswith(FINISHED_PREFIX):
            log.info("run %d: %s", run_id, status)
            return status
        time.sleep(poll)
    log.error("run %d not finished after %.0f s (last status %s)", run_id, timeout or cfg.run_timeout, status)
    return "timeout"


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a Flower process and its children (terminate, then kill after `grace` seconds)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(grace)
    try:  # children (ServerApp, ClientApp processes) that outlived the leader
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
