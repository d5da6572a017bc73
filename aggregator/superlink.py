"""The coordinating site's role: start Flower's SuperLink with TLS and node authentication,
register the sites' keys, submit the FedTAR app and follow it to its end state.

`fedtar server --config server.toml` is a thin wrapper around ``flower-superlink`` and
the ``flwr`` CLI (see docs/guides/deploy.md). Every wait has a deadline; the run's outcome
is read from ``flwr list`` (``flwr run`` exits 0 even when a run fails).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fedtar.config import load_dataclass_toml
from fedtar.operations.flower_processes import flower_tool, stop

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
    simulation: bool = False            # Flower's simulation runtime (aggregator.local_simulation), not sites
    start_timeout: float = 60.0         # seconds for the SuperLink to answer
    run_timeout: float = 24 * 3600.0    # seconds for a submitted run to finish
    stall_timeout: float = 0.0          # >0: give up when no round was checkpointed for this long (needs an
                                        # absolute out-dir in the run config); 0: only run_timeout
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
           "--disable-runtime-dependency-installation"] + (["--simulation"] if cfg.simulation else [])
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


def flwr_json(cfg: ServerRoleConfig, *args: str, timeout: float = 120.0) -> dict:
    """`flwr ... --format json`, read by its ``success`` field.

    The CLI exits 0 even when it could not reach the SuperLink (it prints
    ``{"success": false, "error-message": ...}``), so the exit code says nothing.
    Raises ``FlwrError`` with Flower's message when the call failed.
    """
    try:
        out = flwr(cfg, *args, "--format", "json", timeout=timeout)
    except subprocess.TimeoutExpired:
        # A busy machine: callers retry an unavailable SuperLink until their own deadline.
        raise FlwrError(f"SuperLink unavailable: `flwr {args[0]}` gave no answer within {timeout:.0f} s") from None
    try:
        reply = json.loads(out.stdout)
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or reply.get("success") is False or out.returncode != 0:
        message = reply.get("error-message", "") if isinstance(reply, dict) else ""
        raise FlwrError(message or (out.stdout + out.stderr).strip()[-800:] or f"exit code {out.returncode}")
    return reply


class FlwrError(RuntimeError):
    """A `flwr` CLI call that failed; ``unavailable`` when the SuperLink did not answer."""

    @property
    def unavailable(self) -> bool:
        return "unavailable" in str(self).lower()


def console_log(cfg: ServerRoleConfig) -> Path:
    """Where the SuperLink's own stdout/stderr go (uvicorn reports bind errors only there)."""
    return Path(cfg.database).parent / "superlink.console.log"


def start_superlink(cfg: ServerRoleConfig, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the SuperLink, write the CLI connection, wait until it is ready (or raise).

    Ready means: the process is alive, it listens on host:port itself (not some other
    server on that port), and the Control API answers a `flwr list` that succeeds. The
    Fleet API is served by the same listener, so SuperNodes can connect from then on.
    A SuperLink that exits at start (e.g. the port is taken: uvicorn binds only after
    its application started) is reported with the last lines of its console output.
    """
    command = superlink_command(cfg)  # checks the certificate files before anything is written
    Path(cfg.database).parent.mkdir(parents=True, exist_ok=True)
    write_connection(cfg)
    console = console_log(cfg)
    with open(console, "ab") as out:
        proc = subprocess.Popen(command, env={**flwr_env(cfg), **(extra_env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return _wait_ready(cfg, proc, console)
    except BaseException:  # not ready, or stopped by a signal meanwhile: leave nothing running
        stop(proc)
        raise


def _wait_ready(cfg: ServerRoleConfig, proc: subprocess.Popen, console: Path) -> subprocess.Popen:
    deadline = time.monotonic() + cfg.start_timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SuperLinkStartError(f"flower-superlink exited with code {proc.returncode} at start: "
                                      f"{_tail(console)} (full output: {console})")
        if listens_on(proc.pid, cfg.port):
            try:
                flwr_json(cfg, "list", cfg.connection, timeout=60)
            except FlwrError as e:
                last_error = str(e).strip().splitlines()[-1] if str(e).strip() else "error"
            else:
                if proc.poll() is None:
                    log.info("SuperLink up at %s:%d (%s)", cfg.host, cfg.port,
                             "insecure" if cfg.insecure else "TLS + node auth")
                    return proc
        time.sleep(0.5)
    raise TimeoutError(f"SuperLink not ready within {cfg.start_timeout:.0f} s (last: {last_error}); "
                       f"console output in {console}")


class SuperLinkStartError(RuntimeError):
    """The SuperLink process ended while starting; ``port_in_use`` when it could not bind."""

    @property
    def port_in_use(self) -> bool:
        return "address already in use" in str(self)


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port`."""
    import psutil

    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def _tail(path: Path, lines: int = 3) -> str:
    """The console's error lines (else its last lines), without colour codes."""
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace")).strip().splitlines()
    except OSError:
        return "(no output)"
    errors = [line.strip() for line in text if "ERROR" in line or "Error" in line]
    return " | ".join((errors or text)[-lines:]) or "(no output)"


def register_nodes(cfg: ServerRoleConfig, retry_for: float = 60.0) -> list[str]:
    """Register each site's public key (an already registered key is fine). Returns the keys added.

    A SuperLink that does not answer is retried for `retry_for` seconds (a busy machine),
    any other refusal is an error naming the key.
    """
    added = []
    for key in cfg.node_keys:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                flwr_json(cfg, "supernode", "register", key, cfg.connection)
            except FlwrError as e:
                if "already" in str(e).lower():
                    break
                if e.unavailable and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                raise RuntimeError(f"registering {key} failed: {str(e)[-500:]}") from None
            added.append(key)
            break
    log.info("registered %d of %d site key(s)", len(added), len(cfg.node_keys))
    return added


def submit_run(cfg: ServerRoleConfig, app: str | Path, run_config: dict[str, object] | None = None,
               federation_config: dict[str, object] | None = None) -> int:
    """`flwr run APP CONNECTION` with the given run config (and a simulation's federation config);
    returns the run id."""
    args = ["run", str(app), cfg.connection]
    if run_config:
        args += ["--run-config", " ".join(f"{k}={_toml_value(v)}" for k, v in run_config.items())]
    if federation_config:
        args += ["--federation-config", " ".join(f"{k}={_toml_value(v)}" for k, v in federation_config.items())]
    try:
        return int(flwr_json(cfg, *args, timeout=300)["run-id"])
    except (FlwrError, ValueError, KeyError, TypeError) as e:
        raise RuntimeError(f"flwr run failed: {str(e)[-800:]}") from None


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
    """The run's status from `flwr list` ("unknown" when the SuperLink did not answer)."""
    try:
        return str(flwr_json(cfg, "list", cfg.connection, "--run-id", str(run_id), timeout=60)["runs"][0]["status"])
    except (FlwrError, KeyError, IndexError, TypeError):
        return "unknown"


def wait_run(cfg: ServerRoleConfig, run_id: int, timeout: float | None = None, poll: float = 2.0,
             progress: Callable[[], object] | None = None, stall_timeout: float | None = None,
             ended: Callable[[], bool] | None = None, status_every: float | None = None) -> str:
    """Poll `flwr list` until the run is finished (its status), or end with "timeout".

    Two deadlines: `timeout` (default `run_timeout`) caps the whole wait; with a
    `progress` callable (any value that changes when the run moves on, e.g. rounds
    checkpointed), the wait also ends when it has not changed for `stall_timeout`
    seconds. A slow machine then gives a slow finish, a stuck run still ends.

    Each `flwr list` is a new Python process (about a second of CPU), so with `ended` (a cheap
    sign that the run is over, e.g. its log stream closed) the status is read when that says so
    and otherwise only every `status_every` seconds (default: every poll). On a 2-core machine a
    status read every second took a quarter of the CPU from a simulation's sites.
    """
    total = timeout or cfg.run_timeout
    every = poll if status_every is None else status_every
    start = time.monotonic()
    last_move, seen = start, progress() if progress else None
    status, last_read = "unknown", None
    while True:
        if last_read is None or time.monotonic() - last_read >= every or (ended is not None and ended()):
            status, last_read = run_status(cfg, run_id), time.monotonic()
            if status.startswith(FINISHED_PREFIX):
                log.info("run %d: %s after %.0f s", run_id, status, time.monotonic() - start)
                return status
        now = time.monotonic()
        if progress:
            current = progress()
            if current != seen:
                seen, last_move = current, now
            if stall_timeout and now - last_move > stall_timeout:
                log.error("run %d made no progress for %.0f s (last status %s, progress %s)", run_id,
                          stall_timeout, status, seen)
                return "timeout"
        if now - start > total:
            log.error("run %d not finished after %.0f s (last status %s)", run_id, total, status)
            return "timeout"
        time.sleep(poll)


def checkpoint_progress(out_dir: str | Path) -> Callable[[], int]:
    """Progress of a run as the number of rounds checkpointed in its out-dir."""
    folder = Path(out_dir) / "checkpoints"
    return lambda: len(list(folder.glob("round-*.pt"))) if folder.is_dir() else 0


# `fedtar server` exit codes (docs/guides/deploy.md).
EXIT_COMPLETED, EXIT_RUN_NOT_COMPLETED, EXIT_USAGE, EXIT_NO_END_STATE, EXIT_FLOWER = 0, 1, 2, 3, 4


@dataclass
class RunOutcome:
    """How a submitted run ended, read from `flwr list`, the run's results.json and its log."""

    status: str              # Flower's ("finished:completed", "finished:failed", ...) or "timeout"
    code: int                # the exit code of `fedtar server --run`
    reason: str              # "" when the run completed every round
    rounds_done: int | None = None
    rounds_asked: int | None = None

    def line(self, run_id: int) -> str:
        done = (f"; {self.rounds_done} of {self.rounds_asked} rounds" if self.rounds_asked is not None
                and self.rounds_done is not None else "")
        return f"run {run_id}: {self.status}{done}" + (f": {self.reason}" if self.reason else "")


def run_outcome(cfg: ServerRoleConfig, run_id: int, status: str, out_dir: str | Path | None,
                rounds_asked: int | None, since: float) -> RunOutcome:
    """The truth about a finished (or timed-out) run.

    Flower's status alone is not enough: a ServerApp that stops before its rounds (too few
    sites) returns normally, so Flower says ``finished:completed``. The run's results.json
    (written during this run: modified after `since`, a time.time()) holds the ServerApp's
    status, message and rounds done; a ServerApp that raised leaves none, and its error is
    read from the run's log (`flwr log`).
    """
    results = _fresh_json(Path(out_dir) / "results.json", since) if out_dir else None
    run_file = _fresh_json(Path(out_dir) / "run.json", since) if out_dir else None
    if run_file and isinstance(run_file.get("config"), dict) and "federation.rounds" in run_file["config"]:
        rounds_asked = int(run_file["config"]["federation.rounds"])
    done = int(results["rounds_done"]) if results and "rounds_done" in results else None
    if status == "timeout":
        return RunOutcome(status, EXIT_NO_END_STATE, f"no end state within the deadline (run_timeout "
                          f"{cfg.run_timeout:.0f} s, stall_timeout {cfg.stall_timeout:.0f} s); the run may still "
                          "be going: `flwr list`", done, rounds_asked)
    if status == "finished:completed" and results is not None:
        if results.get("status") == "completed" and (rounds_asked is None or done == rounds_asked):
            return RunOutcome(status, EXIT_COMPLETED, "", done, rounds_asked)
        reason = str(results.get("message") or f"results.json status {results.get('status')!r}")
        return RunOutcome(status, EXIT_RUN_NOT_COMPLETED, f"stopped: {reason}", done, rounds_asked)
    if status == "finished:completed":
        return RunOutcome(status, EXIT_RUN_NOT_COMPLETED, "the ServerApp ended without writing results.json "
                          f"in {out_dir}", done, rounds_asked)
    if results is not None and results.get("message"):
        return RunOutcome(status, EXIT_RUN_NOT_COMPLETED, str(results["message"]), done, rounds_asked)
    return RunOutcome(status, EXIT_RUN_NOT_COMPLETED, run_error(cfg, run_id) or
                      f"no reason found (see `flwr log {run_id}` and {console_log(cfg)})", done, rounds_asked)


def _fresh_json(path: Path, since: float) -> dict | None:
    try:
        if path.stat().st_mtime < since - 1.0:
            return None
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def run_error(cfg: ServerRoleConfig, run_id: int) -> str:
    """The ServerApp's error from the run's log (`flwr log RUN_ID --show`): its last exception line."""
    try:
        out = flwr(cfg, "log", str(run_id), cfg.connection, "--show", timeout=60)
    except subprocess.TimeoutExpired:
        return ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # A Python traceback ends with "SomeError: message"; Flower's own lines say ERROR.
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Refusal)\b.*:", line)]
    if not errors:
        errors = [line for line in lines if "ERROR" in line and "Exit Code" not in line]
    return errors[-1][:1000] if errors else ""
