"""Client-level DP (clipping, noise, accounting) and the sites' audit logs, in process."""

from __future__ import annotations

import json

import pytest
import torch
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from aggregator.inprocess_grid import InProcessGrid
from aggregator.server_app import run_from_values
from clients.client_app import app as client_app
from conftest import TINY_FED
from fedtar.config import load_config
from fedtar.generator.model import adapt_model, load_model
from fedtar.generator.parameters import get_travelling_state
from fedtar.trust.audit import read_log, verify_chain
from test_federation import values


def grid_with_audit(tmp_path, n_sites=3):
    configs = [{"partition-id": i, "num-partitions": n_sites, "audit-log": str(tmp_path / f"audit-{i}.jsonl")}
               for i in range(n_sites)]
    return InProcessGrid([client_app] * n_sites, configs)


def final_state(out):
    return torch.load(out / "final_state.pt")


def test_dp_epsilon_matches_the_rdp_accountant(tiny_base, tiny_federation, tmp_path, caplog):
    caplog.set_level("INFO")
    z, delta = 0.9, 1e-4
    result = run_from_values(grid_with_audit(tmp_path), values(
        tiny_base, tiny_federation, tmp_path, federation__rounds=3, privacy__clip=0.5,
        privacy__noise_multiplier=z, privacy__delta=delta))
    assert result.status == "completed"
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))  # Opacus's default orders
    for r, entry in enumerate(result.history, start=1):
        expected, _ = get_privacy_spent(orders=orders, rdp=compute_rdp(q=1.0, noise_multiplier=z, steps=r,
                                                                         orders=orders), delta=delta)
        assert entry["epsilon"] == pytest.approx(expected, rel=1e-9)
    assert result.history[2]["epsilon"] > result.history[0]["epsilon"] > 0
    assert "epsilon" in caplog.text and f"(delta {delta:g})" in caplog.text


@pytest.mark.parametrize("strategy", ["fedtar", "fedavg"])
def test_dp_with_zero_noise_and_large_clip_equals_the_plain_run(tiny_base, tiny_federation, tmp_path, strategy):
    plain, dp = tmp_path / "plain", tmp_path / "dp"
    run_from_values(grid_with_audit(plain), values(tiny_base, tiny_federation, plain, federation__rounds=2,
                                                   federation__strategy=strategy))
    run_from_values(grid_with_audit(dp), values(tiny_base, tiny_federation, dp, federation__rounds=2,
                                                federation__strategy=strategy, privacy__clip=1e6,
                                                privacy__noise_multiplier=0.0))
    a, b = final_state(plain), final_state(dp)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_clipping_bounds_each_sites_update(tiny_base, tiny_federation, tmp_path, caplog):
    caplog.set_level("INFO", logger="clients.client_app")
    clip = 1e-3
    base, _ = load_model(tiny_base)
    torch.manual_seed(0)
    initial = get_travelling_state(adapt_model(base, load_config(overrides=TINY_FED)))

    def moved(out) -> float:
        final = torch.load(out / "final_state.pt")
        return sum(float((final[k].double() - initial[k].double()).pow(2).sum()) for k in initial) ** 0.5

    plain, dp = tmp_path / "plain", tmp_path / "dp"
    run_from_values(grid_with_audit(plain), values(tiny_base, tiny_federation, plain, federation__rounds=1,
                                                   federation__strategy="fedavg"))
    result = run_from_values(grid_with_audit(dp), values(
        tiny_base, tiny_federation, dp, federation__rounds=1, federation__strategy="fedavg", privacy__clip=clip,
        privacy__noise_multiplier=0.0))
    assert result.status == "completed"
    # Unclipped, the global moves far beyond the bound; clipped, by at most the clip
    # (a mean of updates each within it).
    assert moved(plain) > 10 * clip
    assert 0 < moved(dp) <= clip * (1 + 1e-6)
    assert caplog.text.count("clipped to 0.001") == 3
    # The unclipped norm stays at the site: no reply carries it.
    for i in range(3):
        assert all("norm" not in key for e in read_log(dp / f"audit-{i}.jsonl") for key in e["metrics"])


def test_audit_log_lists_exactly_what_the_server_received(tiny_base, tiny_federation, tmp_path):
    out = tmp_path / "run"
    run_from_values(grid_with_audit(tmp_path), values(tiny_base, tiny_federation, out, federation__rounds=2))
    received = [json.loads(line) for line in (out / "received.jsonl").read_text().splitlines()]
    assert len(received) == 3 * 2 + 3  # 2 train rounds and the final evaluation, 3 sites
    for i in range(3):
        log = read_log(tmp_path / f"audit-{i}.jsonl")
        assert verify_chain(tmp_path / f"audit-{i}.jsonl") == []
        node = log[0]["node_id"]
        assert {e["node_id"] for e in log} == {node}
        server_side = [r["digest"] for r in received if r["node_id"] == node]
        assert [e["digest"] for e in log] == server_side
        assert [e["kind"] for e in log] == ["train", "train", "evaluate"]
        train = log[0]
        assert {a["record"] for a in train["arrays"]} == {"visit-1", "visit-2", "visit-3"}
        assert train["total_bytes"] == sum(a["bytes"] for a in train["arrays"]) > 0
    # Removing a line breaks the chain.
    path = tmp_path / "audit-0.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    assert verify_chain(path) and "line was removed or edited" in verify_chain(path)[0]


def test_dp_refuses_what_it_does_not_cover(tiny_base, tiny_federation, tmp_path):
    with pytest.raises(ValueError, match="SCAFFOLD"):
        run_from_values(grid_with_audit(tmp_path), values(tiny_base, tiny_federation, tmp_path,
                                                          federation__strategy="scaffold", privacy__clip=1.0))
