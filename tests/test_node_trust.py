"""A hospital node's trust settings: signed apps only, the vetted base, the global's shape, pinned keys.

The ClientApp is called in process (InProcessGrid) with the messages the server builds;
refusals must reach the server as error replies and the site's audit log as a line.
Flower's refusal of an unsigned app bundle needs a SuperLink serving signed bundles
(Flower Hub): here the flag's plumbing is tested, the refusal itself is Flower's.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.config import parse_config_args

from aggregator.inprocess_grid import InProcessGrid
from aggregator.server_app import run_from_values
from clients.client_app import app as client_app
from clients.node_policy import parse_pins, pin_breaches
from clients.supernode import load_node_config, supernode_command
from conftest import TINY_FED
from fedtar.cli import main
from fedtar.config import load_config
from fedtar.generator.model import adapt_model, load_model
from fedtar.generator.parameters import get_travelling_state
from fedtar.trust.audit import read_log, verify_chain
from fedtar.trust.base_hash import base_sha256


def _node_toml(tmp_path, extra: str = "", pins: str = "") -> str:
    path = tmp_path / "node.toml"
    path.write_text('[supernode]\nsuperlink = "127.0.0.1:9093"\ninsecure = true\nmanifest = "site/manifest.csv"\n'
                    f'base_dir = "base"\naudit_log = "audit.jsonl"\n{extra}\n' + (f"[supernode.pins]\n{pins}" if pins else ""))
    return str(path)


def _ed25519_entities(path) -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    path.write_text(f"fpk_00000000-0000-4000-8000-000000000001: '{line} signer@federation'\n")


def test_node_toml_trust_settings_reach_flower(tmp_path):
    _ed25519_entities(tmp_path / "trusted.yaml")
    sha = "ab" * 32
    cfg = load_node_config(_node_toml(tmp_path, f'trusted_entities = "trusted.yaml"\nbase_sha256 = "{sha}"',
                                      '"privacy.clip" = "> 0, <= 1.0"\n"privacy.noise_multiplier" = ">= 0.5"\n'
                                      '"train.base" = "frozen"\n'))
    cmd = supernode_command(cfg)
    assert cmd[cmd.index("--trusted-entities") + 1] == str((tmp_path / "trusted.yaml").resolve())
    node_config = parse_config_args([cmd[cmd.index("--node-config") + 1]])  # as flower-supernode parses it
    assert node_config["base-sha256"] == sha and node_config["manifest"].endswith("site/manifest.csv")
    assert json.loads(node_config["pins"]) == {"privacy.clip": "> 0, <= 1.0", "privacy.noise_multiplier": ">= 0.5",
                                               "train.base": "frozen"}
    assert parse_pins(node_config["pins"])["privacy.clip"] == [(">", 0.0), ("<=", 1.0)]


def test_missing_or_keyless_trust_files_and_bad_pins_are_clear_errors(tmp_path):
    cfg = load_node_config(_node_toml(tmp_path, 'trusted_entities = "nowhere.yaml"'))
    with pytest.raises(FileNotFoundError, match="nowhere.yaml: trusted_entities file missing"):
        supernode_command(cfg)
    (tmp_path / "rsa.yaml").write_text("fpk_1: 'ssh-rsa AAAAB3NzaC1yc2E'\n")
    with pytest.raises(ValueError, match="rsa.yaml: no 'ssh-ed25519"):
        supernode_command(load_node_config(_node_toml(tmp_path, 'trusted_entities = "rsa.yaml"')))
    with pytest.raises(ValueError, match=r"node.toml: \[supernode.pins\]: pins on unknown config key\(s\) privacy.clipp"):
        load_node_config(_node_toml(tmp_path, pins='"privacy.clipp" = "<= 1"\n'))
    with pytest.raises(ValueError, match="node.toml: base_sha256 must be"):
        load_node_config(_node_toml(tmp_path, 'base_sha256 = "abc"'))


def test_base_hash_is_stable_and_changes_with_any_file(tiny_base, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_base, a)
    shutil.copytree(tiny_base, b)
    assert base_sha256(a) == base_sha256(b) == base_sha256(tiny_base)
    assert main(["base-hash", str(a)]) == 0 and capsys.readouterr().out.strip() == base_sha256(a)
    weights = b / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert base_sha256(b) != base_sha256(a)
    (a / "extra.json").write_text("{}")
    assert base_sha256(a) != base_sha256(tiny_base)


def test_pins_accept_exact_values_and_bounds_and_catch_dp_off():
    pins = {"privacy.clip": "> 0, <= 1.0", "privacy.noise_multiplier": ">= 0.5", "train.base": "frozen",
            "strategy": "fedtar"}
    assert pin_breaches(json.dumps(pins), {"privacy.clip": 0.8, "privacy.noise_multiplier": 1.1}, "fedtar") == []
    breaches = pin_breaches(json.dumps(pins), {"privacy.clip": 5.0, "train.base": "trainable"}, "fedavg")
    assert len(breaches) == 4 and any("privacy.clip = 5.0" in b for b in breaches)
    assert any("privacy.clip = 0.0" in b for b in pin_breaches(json.dumps(pins), {}, "fedtar"))  # DP off by default


# -- the ClientApp in process ---------------------------------------------------------------
def _global(tiny_base) -> dict[str, torch.Tensor]:
    base, _ = load_model(tiny_base)
    torch.manual_seed(0)
    return get_travelling_state(adapt_model(base, load_config(overrides=TINY_FED)))


def _send(tiny_base, tiny_federation, node: dict, state: dict, **overrides) -> tuple[Message, InProcessGrid]:
    node_config = {"partition-id": 0, "num-partitions": 3, **node}
    grid = InProcessGrid([client_app], [node_config])
    cfg = load_config(overrides={**TINY_FED, **overrides})
    config = ConfigRecord({**cfg.to_flat(), "base-dir": str(tiny_base), "data-root": str(tiny_federation),
                           "strategy": "fedtar", "server-round": 1})
    msg = grid.create_message(RecordDict({"global": ArrayRecord(state), "config": config}), "train", 1000, "1")
    (reply,) = grid.send_and_receive([msg])
    return reply, grid


def _refusal(reply: Message, audit) -> str:
    assert reply.has_error(), "the node should have refused"
    entries = read_log(audit)
    assert entries[-1]["kind"] == "refused-train" and entries[-1]["arrays"] == [] and not verify_chain(audit)
    assert entries[-1]["reason"] in reply.error.reason
    return reply.error.reason


def test_node_refuses_a_base_it_did_not_vet(tiny_base, tiny_federation, tmp_path):
    audit = tmp_path / "audit.jsonl"
    reply, _ = _send(tiny_base, tiny_federation, {"base-sha256": "0" * 64, "audit-log": str(audit)}, _global(tiny_base))
    assert f"sha256 {base_sha256(tiny_base)}, the node vetted {'0' * 64}" in _refusal(reply, audit)


@pytest.mark.parametrize("change", ["extra", "dtype", "shape", "missing"])
def test_node_refuses_a_global_outside_its_travelling_set(change, tiny_base, tiny_federation, tmp_path):
    audit = tmp_path / "audit.jsonl"
    state = _global(tiny_base)
    name = next(iter(state))
    if change == "extra":   # a server trying to push base weights
        state["decoder.transformer.wte.weight"] = torch.zeros(4, 4)
    elif change == "dtype":
        state[name] = state[name].double()
    elif change == "shape":
        state[name] = torch.zeros(3, 3)
    else:
        del state[name]
    reply, _ = _send(tiny_base, tiny_federation, {"audit-log": str(audit)}, state)
    reason = _refusal(reply, audit)
    assert {"extra": "outside the travelling set", "dtype": "torch.float64", "shape": "(3, 3)",
            "missing": "missing"}[change] in reason


def test_node_refuses_a_run_weaker_than_its_pins_and_trains_when_it_complies(tiny_base, tiny_federation, tmp_path):
    audit = tmp_path / "audit.jsonl"
    node = {"pins": json.dumps({"privacy.clip": "> 0, <= 1.0", "train.base": "frozen"}), "audit-log": str(audit),
            "base-sha256": base_sha256(tiny_base)}
    reply, _ = _send(tiny_base, tiny_federation, node, _global(tiny_base), **{"privacy.clip": 5.0})
    assert "privacy.clip = 5.0 breaks the node's pin (<= 1.0)" in _refusal(reply, audit)
    reply, _ = _send(tiny_base, tiny_federation, node, _global(tiny_base), **{"privacy.clip": 0.5})
    assert not reply.has_error() and any(r.startswith("visit-") for r in reply.content.array_records)
    assert read_log(audit)[-1]["kind"] == "train" and not verify_chain(audit)


def test_the_server_sees_why_every_node_refused(tiny_base, tiny_federation, tmp_path):
    pins = json.dumps({"privacy.noise_multiplier": ">= 0.5"})
    grid = InProcessGrid([client_app] * 2, [{"partition-id": i, "num-partitions": 3, "pins": pins} for i in (0, 1)])
    values = {**TINY_FED, "base-dir": str(tiny_base), "data-root": str(tiny_federation), "out-dir": str(tmp_path),
              "federation.rounds": 1, "federation.round_retries": 0}
    result = run_from_values(grid, values)
    assert result.status == "stopped" and result.rounds_done == 0
    rejected = result.history[-1]["rejected"]
    assert len(rejected) == 2 and all("breaks the node's pin (>= 0.5)" in r for r in rejected.values())
