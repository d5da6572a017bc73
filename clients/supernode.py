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

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregator.superlink import flower_tool
from clients.node_policy import pins_json
from fedtar.config import load_dataclass_toml


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


def load_node_config(path: str | Path) -> NodeRoleConfig:
    path = Path(path)
    cfg = load_dataclass_toml(path, "supernode", NodeRoleConfig)
    for name in ("ca_cert", "private_key", "manifest", "base_dir", "audit_log", "trusted_entities"):
        value = getattr(cfg, name)
        if value and not Path(value).is_absolute():
            setattr(cfg, name, str((path.parent / value).resolve()))
    try:
        pins_json(cfg.pins)
    except ValueError as e:
        raise ValueError(f"{path}: [supernode.pins]: {e}") from None
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
