"""A hospital's role: start Flower's SuperNode next to the site's data: `fedtar node`.

The node connects out to the SuperLink over TLS (the federation's CA), authenticates
with the site's private key, and tells the ClientApp where the site's manifest, the
base model and the audit log are (node config). Nothing but the ClientApp's replies
leaves the site, and each reply is written to the audit log first.

The site's trust settings travel the same way: ``trusted_entities`` (Flower refuses app
bundles not signed by one of these Ed25519 keys), ``base_sha256`` (the ClientApp refuses
another base) and ``[supernode.pins]`` (run-config keys the server may not change; see
``clients.node_policy``).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from clients.node_policy import pins_json
from fedtar.config import load_dataclass_toml
from fedtar.operations.flower_processes import flower_tool, stop


@dataclass
class NodeRoleConfig:
    """`[supernode]` in node.toml (paths relative to the file)."""

    superlink: str = "127.0.0.1:9093"   # the SuperLink's address as host:port
    ca_cert: str = "certs/ca.crt"
    private_key: str = "certs/node"     # OpenSSH ECDSA key from `fedtar certs`
    manifest: str = "data/manifest.csv"
    base_dir: str = "models/base"
    audit_log: str = "audit/audit.jsonl"
    port: int = 9094                    # the node's local runtime API (one per node on a host)
    max_retries: int = 0                # reconnection attempts (0: Flower's default, unlimited)
    max_wait_time: float = 0.0          # seconds to keep reconnecting (0: no limit)
    insecure: bool = False
    trusted_entities: str = ""          # YAML of Ed25519 keys (fpk_ID: ssh-ed25519 ...): only signed apps run
    base_sha256: str = ""               # `fedtar base-hash BASE_DIR` of the vetted base ("": not checked)
    pins: dict[str, Any] = field(default_factory=dict)  # [supernode.pins]: key = value or "> 0, <= 1.0"
    log_file: str = "logs/node.log"     # the SuperNode's output and FedTAR's own lines (also on the console)
    retry_max_delay: float = 15.0       # a refused or ended SuperNode is restarted after 1, 2, 4... s, at most this
    give_up_after: float = 0.0          # >0: exit when not connected for this many seconds (0: keep retrying)


def load_node_config(path: str | Path) -> NodeRoleConfig:
    path = Path(path)
    cfg = load_dataclass_toml(path, "supernode", NodeRoleConfig)
    for name in ("ca_cert", "private_key", "manifest", "base_dir", "audit_log", "trusted_entities", "log_file"):
        value = getattr(cfg, name)
        if value and not Path(value).is_absolute():
            setattr(cfg, name, str((path.parent / value).resolve()))
    try:
        pins_json(cfg.pins)
    except ValueError as e:
        raise ValueError(f"{path}: [supernode.pins]: {e}") from None
    if not cfg.retry_max_delay > 0 or cfg.give_up_after < 0:
        raise ValueError(f"{path}: retry_max_delay must be > 0 and give_up_after >= 0")
    if cfg.base_sha256 and len(cfg.base_sha256.strip()) != 64:
        raise ValueError(f"{path}: base_sha256 must be the 64 hex digits `fedtar base-hash DIR` prints")
    return cfg


def check_trusted_entities(path: str | Path) -> Path:
    """The trusted-entities file Flower will read: present and holding at least one Ed25519 key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: trusted_entities file missing (YAML mapping fpk_<id>: 'ssh-ed25519 ...'; "
                                "get the signers' public keys from your federation)")
    text = path.read_text(encoding="utf-8", errors="replace")
    if "ssh-ed25519 " not in text:
        raise ValueError(f"{path}: no 'ssh-ed25519 ...' public key (Flower verifies app bundles with Ed25519 only)")
    return path


def supernode_command(cfg: NodeRoleConfig) -> list[str]:
    node_config = f'manifest="{cfg.manifest}" base-dir="{cfg.base_dir}" audit-log="{cfg.audit_log}"'
    if cfg.base_sha256:
        node_config += f' base-sha256="{cfg.base_sha256.strip().lower()}"'
    if cfg.pins:
        node_config += f" pins='{pins_json(cfg.pins)}'"
    cmd = [flower_tool("flower-supernode"), "--superlink", cfg.superlink, "--port", str(cfg.port),
           "--node-config", node_config]
    if cfg.trusted_entities:
        cmd += ["--trusted-entities", str(check_trusted_entities(cfg.trusted_entities))]
    if cfg.max_retries:
        cmd += ["--max-retries", str(cfg.max_retries)]
    if cfg.max_wait_time:
        cmd += ["--max-wait-time", str(cfg.max_wait_time)]
    if cfg.insecure:
        return cmd + ["--insecure"]
    for name in ("ca_cert", "private_key"):
        if not Path(getattr(cfg, name)).is_file():
            raise FileNotFoundError(f"{getattr(cfg, name)}: missing ({name}); get it from the coordinating site")
    return cmd + ["--root-certificates", cfg.ca_cert, "--auth-supernode-private-key", cfg.private_key]


def start_supernode(cfg: NodeRoleConfig, env: dict[str, str] | None = None,
                    log_file: str | Path | None = None) -> subprocess.Popen:
    if not Path(cfg.manifest).is_file():
        raise FileNotFoundError(f"{cfg.manifest}: the site's manifest is missing (see `fedtar prepare`)")
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    return subprocess.Popen(supernode_command(cfg), env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


# flower-supernode exit codes that no restart can fix (flwr.supercore.exit.ExitCode): the
# configuration is wrong. Any other ending (305: refused or unreachable; a crash) is retried.
FATAL_EXITS = {
    302: "the node key is not a valid elliptic-curve private key (private_key)",
    303: "node authentication needs TLS (insecure = true cannot be combined with a node key)",
    304: "the trusted_entities file could not be read",
    600: "the superlink address is invalid (want host:port)",
    602: "TLS is not supported here",
    603: "ca_cert cannot be combined with insecure = true",
    604: "a configured path is invalid",
    605: "the TLS certificate configuration is incomplete or invalid",
    606: "this Flower version is incompatible with the SuperLink's",
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# `fedtar node` exit codes (docs/guides/deploy.md); 2 is a usage or config error (fedtar.cli).
EXIT_STOPPED, EXIT_CONFIG, EXIT_GAVE_UP = 0, 3, 4


class NodeRunner:
    """`fedtar node`: flower-supernode under supervision, visible on the console and in `log_file`.

    Every line of the SuperNode (and its SuperExec and ClientApp processes) is copied to the
    console and the log file; FedTAR adds its own lines, prefixed ``fedtar-node:``, for
    connect, refusal (with the reason), each message received, each reply sent and each
    refusal written to the audit log, and the exit. A SuperNode that ends (its key not
    registered yet, the SuperLink gone) is restarted after 1, 2, 4... s, at most
    `retry_max_delay`; Flower itself keeps retrying an unreachable SuperLink. `stop()`
    (SIGTERM/SIGINT) stops the SuperNode and every process it started.
    """

    def __init__(self, cfg: NodeRoleConfig, env: dict[str, str] | None = None, console: IO[str] | None = None):
        self.cfg, self.env = cfg, env
        self.console = console if console is not None else sys.stdout
        self.stopping = threading.Event()
        self.stop_signal = ""
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._audit_offset = Path(cfg.audit_log).stat().st_size if Path(cfg.audit_log).is_file() else 0
        Path(cfg.log_file).parent.mkdir(parents=True, exist_ok=True)
        self._log = open(cfg.log_file, "a", encoding="utf-8")

    # -- output -------------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        with self._lock:
            for stream in (self.console, self._log):
                try:
                    stream.write(line + "\n")
                    stream.flush()
                except (OSError, ValueError):
                    pass

    def say(self, text: str) -> None:
        self._write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} fedtar-node: {text}")

    def _pump(self, stream: IO[bytes], attempt: dict[str, Any]) -> None:
        """Copy the SuperNode's output and turn the lines that matter into FedTAR lines."""
        header = ""
        for raw in iter(stream.readline, b""):
            line = ANSI.sub("", raw.decode("utf-8", errors="replace").rstrip("\n"))
            self._write(line)
            if m := re.search(r"SuperNode ID: (\d+)", line):
                attempt["connected"] = True
                self.say(f"connected to the SuperLink at {self.cfg.superlink} as node {m.group(1)} "
                         "(TLS and node key accepted)")
            elif "Connection attempt failed" in line and not attempt.get("unreachable"):
                attempt["unreachable"] = True
                state = "no longer reachable" if attempt.get("connected") else "not reachable yet (or refusing)"
                self.say(f"SuperLink at {self.cfg.superlink} {state}; Flower retries with a backoff of at most 20 s")
            elif "Failed to activate SuperNode" in line:
                attempt["reason"] = ("refused by the SuperLink: this node's key is not registered there (yet): "
                                     f"unknown key {self.cfg.private_key}.pub")
                self.say(attempt["reason"])
            elif "SSL/TLS handshake error" in line:
                attempt["fatal"] = (f"TLS handshake with {self.cfg.superlink} failed: ca_cert {self.cfg.ca_cert} "
                                    "does not verify the SuperLink's certificate for this address")
            elif "FAB verification failed" in line or "The FAB could not be verified" in line:
                self.say(f"refused {header or 'a run'}: untrusted app (the app bundle is not signed by a key in "
                         f"{self.cfg.trusted_entities or 'trusted_entities'})")
            elif m := re.search(r"\[(RUN \d+(?:, ROUND \d+)?)\]", line):
                header = m.group(1).lower()
            elif m := re.search(r"Receiving: (\w+) message", line):
                self.say(f"{header}: {m.group(1)} message received")
            elif m := re.search(r"Exit Code: (\d+)", line):
                attempt["exit_line"] = int(m.group(1))
            self._audit_lines()

    def _audit_lines(self) -> None:
        """One FedTAR line per new audit-log entry: each reply sent, each refusal with its reason."""
        path = Path(self.cfg.audit_log)
        with self._lock:
            try:
                size = path.stat().st_size
            except OSError:
                return
            if size <= self._audit_offset:
                return
            with path.open("rb") as f:
                f.seek(self._audit_offset)
                data = f.read(size - self._audit_offset)
            complete = data[: data.rfind(b"\n") + 1]
            self._audit_offset += len(complete)
        for raw in complete.splitlines():
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            where = f"run {e.get('run_id')}, round {e.get('round')}"
            kind = str(e.get("kind", ""))
            if kind.startswith("refused-"):
                self.say(f"{where}: refused the {kind[len('refused-'):]} message: {e.get('reason', '')}")
            else:
                self.say(f"{where}: {kind} reply sent ({len(e.get('arrays', []))} tensors, "
                         f"{int(e.get('total_bytes', 0)) / 2**20:.2f} MiB, sha256 {str(e.get('digest', ''))[:12]}; "
                         "audit log appended)")

    # -- life cycle ---------------------------------------------------------------------------
    def stop(self, signum: int | None = None) -> None:
        """Ask run() to stop the SuperNode and return (safe from a signal handler)."""
        self.stop_signal = signal.Signals(signum).name if signum else "request"
        self.stopping.set()

    def run(self) -> int:
        """Run until stopped (EXIT_STOPPED), a configuration error no restart fixes (EXIT_CONFIG) or,
        with `give_up_after`, that long without a connection (EXIT_GAVE_UP)."""
        cfg, delay, tries = self.cfg, 1.0, 0
        last_connected = time.monotonic()
        command = supernode_command(cfg)
        self.say(f"starting: manifest {cfg.manifest}, SuperLink {cfg.superlink}, audit log {cfg.audit_log}, "
                 f"log {cfg.log_file}")
        try:
            while not self.stopping.is_set():
                tries += 1
                attempt: dict[str, Any] = {}
                self.proc = subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, start_new_session=True)
                self.say(f"connecting to {cfg.superlink} (attempt {tries}, flower-supernode pid {self.proc.pid})")
                pump = threading.Thread(target=self._pump, args=(self.proc.stdout, attempt), daemon=True)
                pump.start()
                while self.proc.poll() is None and not self.stopping.wait(1.0):
                    self._audit_lines()
                    if attempt.get("connected"):
                        last_connected = time.monotonic()
                    elif self._gave_up(last_connected):  # Flower itself retries an unreachable SuperLink forever
                        self._stop_proc()
                        return self._give_up("the SuperLink was not reachable")
                if self.stopping.is_set():
                    break
                pump.join(10)
                self._audit_lines()
                # flower-supernode prints its exit code ("Exit Code: 302") but exits with 1.
                flower_code = attempt.get("exit_line", self.proc.returncode)
                if attempt.get("connected"):
                    last_connected, delay = time.monotonic(), 1.0
                if attempt.get("fatal") or flower_code in FATAL_EXITS:
                    self.say(f"exit {EXIT_CONFIG}: {attempt.get('fatal') or FATAL_EXITS[flower_code]} (Flower exit "
                             f"code {flower_code}); a restart cannot fix this, not retrying (see {cfg.log_file})")
                    return EXIT_CONFIG
                reason = attempt.get("reason") or ("the SuperLink went away or ended the connection"
                                                   if attempt.get("connected") else "no connection")
                if self._gave_up(last_connected):
                    return self._give_up(reason)
                self.say(f"SuperNode ended (Flower exit code {flower_code}: {reason}); restarting in {delay:.0f} s")
                if self.stopping.wait(delay):
                    break
                delay = min(delay * 2, cfg.retry_max_delay)
            self._stop_proc()
            self.say(f"exit {EXIT_STOPPED}: stopped ({self.stop_signal}); the SuperNode and its processes are stopped")
            return EXIT_STOPPED
        finally:
            self._stop_proc()
            self._log.close()

    def _gave_up(self, last_connected: float) -> bool:
        return bool(self.cfg.give_up_after) and time.monotonic() - last_connected > self.cfg.give_up_after

    def _give_up(self, reason: str) -> int:
        self.say(f"exit {EXIT_GAVE_UP}: {reason}; not connected for {self.cfg.give_up_after:.0f} s (give_up_after)")
        return EXIT_GAVE_UP

    def _stop_proc(self) -> None:
        if self.proc is not None:
            stop(self.proc)
