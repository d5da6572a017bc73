"""The federation end to end in process: rounds, guards, privacy, resume, baselines.

Same ServerApp loop, strategies and ClientApp as the real engines; the
InProcessGrid only replaces the transport (tests/test_simulation.py runs
the same through Flower's Ray simulation engine).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

from aggregator.inprocess_grid import InProcessGrid
from aggregator.server_app import run_from_values
from clients.client_app import app as client_app
from conftest import TINY_FED
from fedtar.config import load_config
from fedtar.generator.model import adapt_model, load_model
from fedtar.generator.parameters import travelling_specs


def values(tiny_base, tiny_federation, out, **extra):
    return {**TINY_FED, "base-dir": str(tiny_base), "data-root": str(tiny_federation), "out-dir": str(out),
            **{k.replace("__", "."): v for k, v in extra.items()}}


def grid_for(n_sites=3, apps=None):
    apps = apps or [client_app] * n_sites
    return InProcessGrid(apps, [{"partition-id": i % n_sites, "num-partitions": n_sites} for i in range(len(apps))],
                         record=True)


def test_fedtar_rounds_alpha_checkpoints_and_metrics(tiny_base, tiny_federation, tmp_path):
    result = run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=2))
    assert result.status == "completed" and result.rounds_done == 2
    for entry in result.history:
        assert entry["valid"] == 3 and entry["bytes_received"] > 0
        assert len(entry["alpha"]) == 3 and sum(entry["alpha"]) == pytest.approx(1.0, abs=1e-4)
    assert result.history[1]["alpha"] != result.history[0]["alpha"], "server-side meta step moves alpha"
    assert (tmp_path / "checkpoints" / "round-0002.pt").is_file()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "completed" and 0 <= saved["metrics"]["bleu4"] <= 1
    assert {f"bleu4-visit-{t}" for t in (1, 2, 3)} <= set(saved["metrics"])
    assert len(saved["site_metrics"]) == 3


# -- faulty sites ------------------------------------------------------------
def faulty(kind: str):
    """A site that answers a FedTAR train message with a broken update (or fails)."""

    def app(msg: Message, context) -> Message:
        if msg.metadata.message_type != "train":
            return client_app(msg, context)
        if kind == "error":
            raise RuntimeError("disk full")
        state = {k: v.clone() for k, v in msg.content["global"].to_torch_state_dict().items()}
        name = next(iter(state))
        if kind == "nan":
            state[name].view(-1)[0] = float("nan")
        elif kind == "inf":
            state[name].view(-1)[0] = float("inf")
        elif kind == "shape":
            state[name] = torch.zeros(3, 3)
        elif kind == "dtype":
            state[name] = state[name].double()
        elif kind == "extra":
            state["decoder.transformer.wte.weight"] = torch.zeros(2, 2)
        elif kind == "norm":
            state = {k: v + 100.0 * torch.randn_like(v) for k, v in state.items()}
        metrics = MetricRecord({"n-visit-1": 5.0, "num-examples": 5.0, "train-loss": 1.0, "years-visit-1": 0.0})
        return Message(content=RecordDict({"visit-1": ArrayRecord(state), "metrics": metrics}), reply_to=msg)

    return app


REASONS = {"error": "error reply", "nan": "non-finite", "inf": "non-finite", "shape": "shape",
           "dtype": "dtype", "extra": "unexpected tensor", "norm": "update norm"}


def test_bad_updates_are_left_out_with_reasons_and_the_round_goes_on(tiny_base, tiny_federation, tmp_path):
    kinds = list(REASONS)
    grid = grid_for(3, [client_app] * 3 + [faulty(k) for k in kinds])
    result = run_from_values(grid, values(tiny_base, tiny_federation, tmp_path, federation__rounds=1))
    assert result.status == "completed"
    entry = result.history[0]
    assert entry["answered"] == 3 + len(kinds) and entry["valid"] == 3
    node_ids = list(grid.get_node_ids())
    for kind, node in zip(kinds, node_ids[3:]):
        assert REASONS[kind] in entry["rejected"][str(node)], (kind, entry["rejected"])
    assert all(torch.isfinite(v).all() for v in result.global_state.values())


def test_too_few_valid_sites_retries_then_stops_cleanly(tiny_base, tiny_federation, tmp_path):
    grid = grid_for(3, [client_app, faulty("nan"), faulty("error")])
    result = run_from_values(grid, values(tiny_base, tiny_federation, tmp_path, federation__rounds=2,
                                          federation__round_retries=1))
    assert result.status == "stopped" and result.rounds_done == 0
    assert [e["attempt"] for e in result.history] == [2]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert "fewer than min_sites=2" in saved["message"]


def test_sites_send_only_declared_tensors_and_numbers(tiny_base, tiny_federation, tmp_path):
    grid = grid_for()
    result = run_from_values(grid, values(tiny_base, tiny_federation, tmp_path, federation__rounds=2,
                                          meta__validation="federated"))
    # The gradients fused into round 2's replies drive a meta step on round 1's aggregation.
    assert "meta" not in result.history[0] and math.isfinite(result.history[1]["meta"])
    base, _ = load_model(tiny_base)
    declared = {s.name for s in travelling_specs(adapt_model(base, load_config(overrides=TINY_FED)))}
    records = [r for m in (grid.sent[0],) for r in m.content.array_records]
    assert records == ["global"]
    texts = []
    from data_adapters.records import find_manifests, read_manifest
    for m in find_manifests(tiny_federation):
        for r in read_manifest(m).records:
            texts += [r.patient_id, r.findings.split(".")[0]]
    assert grid.replies
    for reply in grid.replies:
        content = reply.content
        assert not content.config_records, "no config (free text) records leave a site"
        for name, record in content.array_records.items():
            assert name.startswith("visit-") or name == "val-grad", name
            assert set(record.keys()) <= declared, set(record.keys()) - declared
        for name, record in content.metric_records.items():
            for key, value in record.items():
                assert isinstance(value, (int, float)), (key, value)
                assert not any(t in key for t in texts)
        # No strings from the site's data anywhere in what was sent.
        blob = repr(dict(content.metric_records)) + " ".join(content.array_records)
        assert not any(t in blob for t in texts)
    assert any("val-grad" in r.content.array_records for r in grid.replies)


def test_resume_gives_the_same_state_as_an_uninterrupted_run(tiny_base, tiny_federation, tmp_path):
    full = run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path / "full", federation__rounds=4))
    run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path / "cut", federation__rounds=2))
    resumed = run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path / "cut",
                                                 federation__rounds=4, resume=True))
    assert resumed.rounds_done == 4 and [e["round"] for e in resumed.history] == [1, 2, 3, 4]
    for name, value in full.global_state.items():
        assert torch.equal(value, resumed.global_state[name]), name


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "fedadam", "fedyogi", "scaffold", "local"])
def test_baselines_run_and_move_the_model(strategy, tiny_base, tiny_federation, tmp_path):
    result = run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=2,
                                                federation__strategy=strategy))
    assert result.status == "completed", result
    assert math.isfinite(result.metrics["loss"]) and result.metrics["num-examples"] > 0
    base, _ = load_model(tiny_base)
    torch.manual_seed(0)
    start = {s.name for s in travelling_specs(adapt_model(base, load_config(overrides=TINY_FED)))}
    assert set(result.global_state) == start
    moved = any(not torch.equal(v, torch.zeros_like(v)) for k, v in result.global_state.items() if "lora_B" in k)
    assert moved == (strategy != "local"), "only local-only training leaves the global untouched"


def test_holdout_site_and_centralized_reference(tiny_base, tmp_path):
    from aggregator.simulation import SimulationPlan, run_simulations
    from data_adapters.synthetic import SyntheticConfig

    cfg = load_config(overrides={**TINY_FED, "federation.rounds": 1, "policy.kind": "uniform"})
    synth = SyntheticConfig(sites=3, patients=6, visits=3, seed=4, image_size=32)
    plan = SimulationPlan(strategies=["fedtar", "centralized"], seeds=[0], holdout_site=2, engine="inprocess")
    fedtar, central = run_simulations(tmp_path, cfg, plan, synth, base_dir=tiny_base)
    assert fedtar.status == central.status == "completed"
    assert [e["valid"] for e in fedtar.history] == [2], "only the two training sites take part"
    holdout_tests = sum(1 for line in (tmp_path / "federation" / "site3" / "manifest.csv").read_text().splitlines()
                        if line.endswith(",test"))
    assert fedtar.metrics["num-examples"] == holdout_tests, "scored on the held-out site's test exams only"
    assert 0 <= central.metrics["bleu4"] <= 1 and math.isfinite(central.metrics["cider"])


def test_server_validation_uses_only_the_training_sites(tiny_base, tiny_federation):
    from aggregator.server_loop import ServerValidation

    cfg = load_config(overrides=TINY_FED)
    held_out = ServerValidation(cfg, str(tiny_base), str(tiny_federation), data_sites="0,1")
    assert {r.site_id for r in held_out.exams.records} == {"site1", "site2"}
    assert {r.split for i, r in enumerate(held_out.exams.records) if i in set(held_out.exams.rows().tolist())} \
        == {"validate"}
    grad = held_out(get_travelling_state_for(tiny_base, cfg))
    assert set(grad) == {s.name for s in travelling_specs(held_out.model)}
    assert any(float(g.abs().sum()) > 0 for g in grad.values())


def get_travelling_state_for(base_dir, cfg):
    from fedtar.generator.parameters import get_travelling_state

    base, _ = load_model(base_dir)
    torch.manual_seed(0)
    return get_travelling_state(adapt_model(base, cfg))


def test_evaluation_every_round_gives_a_curve(tiny_base, tiny_federation, tmp_path):
    result = run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=3,
                                                federation__eval_every=1))
    curve = [e["eval"]["loss"] for e in result.history]
    assert len(curve) == 3 and all(math.isfinite(v) for v in curve)
    assert result.history[-1]["eval"] == result.metrics
    assert curve[-1] < curve[0], "the test loss falls over rounds"
