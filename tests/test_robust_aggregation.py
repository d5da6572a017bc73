"""Streaming aggregation and `federation.robust`.

The robust formulas are checked against Flower's own functions, the streaming fold
against the weighted mean taken in one go, and the defences against a poisoning site
in a 4-site tiny federation.
"""

from __future__ import annotations

import random
import weakref

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy.fedtrimmedavg import trim_mean
from flwr.serverapp.strategy.multikrum import select_multikrum

from aggregator.inprocess_grid import InProcessGrid
from aggregator.robust import coordinate_median, krum_select, trimmed_mean
from aggregator.strategies import FedAvg, FedTAR
from fedtar.config import load_config
from fedtar.generator.parameters import TensorSpec
from fedtar.learning.temporal_policy import weighted_mean

SPECS = [TensorSpec("enc.lora_A", (6, 4), torch.float32), TensorSpec("dec.lora_B", (4, 7), torch.float32)]


# -- the formulas ------------------------------------------------------------
@pytest.mark.parametrize("k", [4, 5])
def test_median_and_trimmed_mean_are_flowers(k):
    stacked = torch.randn(k, 3, 5, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    assert np.allclose(coordinate_median(stacked).numpy(), np.median(stacked.numpy(), axis=0), rtol=0, atol=1e-15)
    for beta in (0.0, 0.2, 0.25, 0.4):
        ours = trimmed_mean(stacked, beta).numpy()
        assert np.allclose(ours, trim_mean(stacked.numpy(), beta), rtol=0, atol=1e-15), beta
    if k == 4:  # int(0.2 * 4) = 0: Flower's default beta trims nothing with 4 sites
        assert torch.allclose(trimmed_mean(stacked, 0.2), stacked.mean(0))


@pytest.mark.parametrize("byzantine,keep", [(0, 1), (1, 2), (2, 3)])
def test_krum_selects_what_flowers_multikrum_selects(byzantine, keep):
    g = torch.Generator().manual_seed(byzantine)
    states = [{s.name: torch.randn(s.shape, generator=g) for s in SPECS} for _ in range(6)]
    states[4] = {k: v * 30 for k, v in states[4].items()}  # one far away
    contents = [RecordDict({"arrays": ArrayRecord(s)}) for s in states]
    flower = select_multikrum(contents, num_malicious_nodes=byzantine, num_nodes_to_select=keep)
    assert krum_select(states, byzantine, keep) == sorted(contents.index(c) for c in flower)
    assert 4 not in krum_select(states, byzantine, keep)


# -- streaming ---------------------------------------------------------------
def fake_site(i: int):
    """Replies with random states near the global (FedTAR: visit-1, visit-2; site 2 lacks visit 2)."""

    def app(msg: Message, context) -> Message:
        g = torch.Generator().manual_seed(100 * i + int(msg.content["config"]["server-round"]))
        start = msg.content["global"].to_torch_state_dict()
        content, metrics = RecordDict(), {"num-examples": float(3 + i), "train-loss": 1.0}
        names = ["visit-1", "visit-2"] if i != 2 else ["visit-1"]
        if msg.content["config"]["strategy"] != "fedtar":
            names = ["arrays"]
        for name in names:
            content[name] = ArrayRecord({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in start.items()})
            metrics[f"n-{name}"] = float(2 + i)
        content["metrics"] = MetricRecord(metrics)
        return Message(content=content, reply_to=msg)

    return app


def watching(cls):
    """The strategy, counting at every parse the parsed states of *other* records still alive."""

    class Watching(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.handed: list[tuple[int, str, weakref.ref]] = []
            self.alive_elsewhere = 0      # states of other replies' records, any record name
            self.alive_other_names = 0    # states of another record name (a robust mode holds one record)

        def read(self, content, name):
            alive = [(c, n) for c, n, ref in self.handed if ref() is not None and c != id(content)]
            self.alive_elsewhere = max(self.alive_elsewhere, len(alive))
            self.alive_other_names = max(self.alive_other_names, sum(n != name for _, n in alive))
            state = super().read(content, name)
            self.handed.append((id(content), name, weakref.ref(next(iter(state.values())))))
            return state

    return Watching


def aggregate_round(strategy, n_sites=5):
    apps = [fake_site(i) for i in range(n_sites)]
    order = list(range(n_sites))
    random.Random(1).shuffle(order)  # arrival order differs from node order
    grid = InProcessGrid([apps[i] for i in order], [{} for _ in order], record=True)
    state = {s.name: torch.randn(s.shape, generator=torch.Generator().manual_seed(7)) for s in SPECS}
    replies = grid.send_and_receive(strategy.configure_train(1, ArrayRecord(state), None, grid))
    arrays, _ = strategy.aggregate_train(1, replies)
    by_node = sorted(grid.replies, key=lambda r: r.metadata.src_node_id)
    return arrays.to_torch_state_dict(), by_node


def test_streaming_fedavg_is_the_weighted_mean_one_reply_at_a_time():
    cfg = load_config(overrides={"federation.strategy": "fedavg"})
    strategy = watching(FedAvg)(cfg, SPECS, {})
    new, replies = aggregate_round(strategy)
    states = [r.content["arrays"].to_torch_state_dict() for r in replies]
    expected = weighted_mean(states, [float(r.content["metrics"]["num-examples"]) for r in replies])
    assert all(torch.equal(new[k], expected[k]) for k in expected), "bit-identical to the sum in node order"
    assert strategy.alive_elsewhere == 0, "no other reply's parsed states alive while one is parsed"


def test_streaming_fedtar_visit_means_bit_identical_one_reply_at_a_time():
    cfg = load_config(overrides={"policy.kind": "uniform"})
    strategy = watching(FedTAR)(cfg, SPECS, {})
    _, replies = aggregate_round(strategy)
    for t, mean in zip((1, 2), strategy.pending.visit_means):
        holders = [r for r in replies if f"visit-{t}" in r.content.array_records]
        expected = weighted_mean([r.content[f"visit-{t}"].to_torch_state_dict() for r in holders],
                                 [float(r.content["metrics"][f"n-visit-{t}"]) for r in holders])
        assert all(torch.equal(mean[k], expected[k]) for k in expected), t
    assert len(holders) == 4 and strategy.alive_elsewhere == 0


@pytest.mark.parametrize("mode", ["median", "trimmed-mean", "multikrum"])
def test_robust_modes_hold_one_visit_at_a_time_and_apply_per_visit(mode):
    cfg = load_config(overrides={"policy.kind": "uniform", "federation.robust": mode, "federation.trim_beta": 0.2,
                                 "federation.krum_byzantine": 1, "federation.krum_keep": 2})
    strategy = watching(FedTAR)(cfg, SPECS, {})
    _, replies = aggregate_round(strategy)
    assert strategy.alive_elsewhere >= 3, "a robust statistic sees the visit's states at once"
    assert strategy.alive_other_names == 0, "but only one visit's"
    visit1 = [r.content["visit-1"].to_torch_state_dict() for r in replies]
    name = SPECS[0].name
    stacked = torch.stack([s[name].double() for s in visit1])
    if mode == "median":
        expected = coordinate_median(stacked).float()
    elif mode == "trimmed-mean":
        expected = trimmed_mean(stacked, 0.2).float()
    else:
        kept = krum_select(visit1, 1, 2)
        assert strategy.info["robust-kept"]["visit-1"] == [replies[i].metadata.src_node_id for i in kept]
        expected = weighted_mean([visit1[i] for i in kept],
                                 [float(replies[i].content["metrics"]["n-visit-1"]) for i in kept])[name]
    assert torch.equal(strategy.pending.visit_means[0][name], expected)


def test_robust_refuses_dp_noise_and_drfa():
    with pytest.raises(ValueError, match="sensitivity"):
        FedAvg(load_config(overrides={"federation.robust": "median", "privacy.clip": 1.0,
                                      "privacy.noise_multiplier": 1.0}), SPECS, {})
    from aggregator.strategies import DRFA
    with pytest.raises(ValueError, match="DRFA"):
        DRFA(load_config(overrides={"federation.robust": "median"}), SPECS, {})
    with pytest.raises(ValueError, match="federation.robust"):
        load_config(overrides={"federation.robust": "mean"})
    from aggregator.robust import ROBUST_MODES
    from fedtar.config import RULES
    assert RULES["federation.robust"].choices == ROBUST_MODES


# -- one poisoning site out of four, tiny federation -------------------------
@pytest.fixture(scope="module")
def four_sites(tmp_path_factory):
    from data_adapters.synthetic import SyntheticConfig, generate_federation

    out = tmp_path_factory.mktemp("four_sites")
    generate_federation(out, SyntheticConfig(sites=4, patients=8, visits=3, seed=9, image_size=32))
    return out


def run_four(tiny_base, fed, out, robust, poison=None, scale=0.0):
    from aggregator.server_app import run_from_values
    from clients.client_app import app as client_app
    from clients.poisoning import poisoning_app
    from test_federation import values

    apps = [client_app] * 3 + [poisoning_app(poison, scale) if poison else client_app]
    grid = InProcessGrid(apps, [{"partition-id": i, "num-partitions": 4} for i in range(4)])
    return run_from_values(grid, values(tiny_base, fed, out, federation__rounds=1, federation__robust=robust,
                                        federation__trim_beta=0.25, federation__krum_byzantine=1,
                                        federation__krum_keep=2, policy__kind="uniform"))


def distance(a, b) -> float:
    return sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a) ** 0.5


def test_a_robust_mode_resists_one_poisoning_site_of_four(tiny_base, four_sites, tmp_path):
    from conftest import TINY_FED
    from test_federation import get_travelling_state_for

    start = get_travelling_state_for(tiny_base, load_config(overrides=TINY_FED))
    clean = run_four(tiny_base, four_sites, tmp_path / "clean", "none").global_state
    move = distance(clean, start)
    assert move > 0
    # Margins from experiments/robust_aggregation.py (3 rounds: flip 1.07 vs 2.09, boost 0.53 vs 2.94).
    for poison, scale, mode, margin in (("flip", 4.0, "median", 0.7), ("boost", 8.0, "trimmed-mean", 0.4)):
        attacked = run_four(tiny_base, four_sites, tmp_path / f"{poison}-none", "none", poison, scale)
        defended = run_four(tiny_base, four_sites, tmp_path / f"{poison}-{mode}", mode, poison, scale)
        assert attacked.history[0]["valid"] == defended.history[0]["valid"] == 4, "under the norm guard's bound"
        undefended, kept = distance(attacked.global_state, clean) / move, distance(defended.global_state, clean) / move
        assert undefended > 1.0, (poison, undefended)
        assert kept < margin * undefended, (poison, mode, kept, undefended)


def test_shuffled_reports_give_every_training_row_another_rows_report(four_sites):
    import csv

    from clients.poisoning import REPORT_COLUMNS, shuffled_reports
    from data_adapters.records import find_manifests

    manifest = find_manifests(four_sites)[-1]
    out = shuffled_reports(manifest, seed=3)
    assert out.parent == manifest.parent and out != manifest  # beside it: image paths still resolve
    read = lambda p: list(csv.DictReader(p.open(newline="", encoding="utf-8")))  # noqa: E731
    before, after = read(manifest), read(out)
    assert [r["image_paths"] for r in before] == [r["image_paths"] for r in after]
    train = [i for i, r in enumerate(before) if r["split"] == "train"]
    assert len(train) > 2
    for i, (b, a) in enumerate(zip(before, after)):
        if i in train:
            assert a["findings"] != b["findings"] or a["impression"] != b["impression"] or \
                sum(r["findings"] == b["findings"] for r in before) > 1, i  # another row's (unless identical text)
        else:
            assert all(a[c] == b[c] for c in REPORT_COLUMNS), i  # scored on true reports
    # The same reports, only moved: a permutation of the training rows' reports.
    key = lambda r: tuple(r[c] for c in REPORT_COLUMNS)  # noqa: E731
    assert sorted(key(before[i]) for i in train) == sorted(key(after[i]) for i in train)


def test_a_label_flipping_site_trains_on_its_copy_and_is_scored_on_its_own_reports(tiny_base, four_sites, tmp_path):
    # The copy's training rows are the priors of its test exams: scored on the copy, the site would
    # be scored on shuffled prior reports. Here the copy is missing, so every train message fails
    # naming it while every evaluate message (on the site's own manifest) succeeds.
    from aggregator.server_app import run_from_values
    from clients.client_app import app as client_app
    from clients.poisoning import poisoning_app
    from test_federation import values

    missing = tmp_path / "nowhere" / "manifest.shuffled.csv"
    apps = [client_app] * 3 + [poisoning_app("boost", 1.0, train_manifest=missing)]
    grid = InProcessGrid(apps, [{"partition-id": i, "num-partitions": 4} for i in range(4)], record=True)
    result = run_from_values(grid, values(tiny_base, four_sites, tmp_path / "run", federation__rounds=1))
    assert result.status == "completed" and result.history[0]["valid"] == 3
    site4 = [r for r in grid.replies if r.metadata.src_node_id == 1003]
    trained = [r for r in site4 if r.metadata.message_type == "train"]
    scored = [r for r in site4 if r.metadata.message_type == "evaluate"]
    assert trained and all(r.has_error() and "nowhere" in r.error.reason for r in trained)
    assert scored and not any(r.has_error() for r in scored)


# -- on a model that writes reports (slow) ------------------------------------
@pytest.mark.slow
def test_multikrum_keeps_report_quality_that_a_label_flipping_site_destroys(tmp_path_factory):
    """The smallest version of experiments/robust_aggregation.py: a base that writes reports, four sites,
    site 4 trains on other exams' reports and boosts its update; Multi-Krum (f 1, keep 3) against the
    plain mean, scored by test CIDEr against the clean run."""
    from aggregator.server_app import run_from_values
    from clients.client_app import app as client_app
    from clients.poisoning import poisoning_app, shuffled_reports
    from data_adapters.records import find_manifests
    from data_adapters.synthetic import SyntheticConfig, generate_federation
    from fedtar.learning.pretrain import pretrain_base

    model = {"model.hidden_size": 64, "model.layers": 2, "model.heads": 2, "data.image_size": 32,
             "demographics.gmm_components": 4, "lora.hyper_dim": 8, "client.local_epochs": 1,
             "client.eval_meteor": False, "data.batch_size": 8, "train.lr": 1e-3, "policy.meta_lr": 1e-2,
             "federation.min_sites": 2}
    base = pretrain_base(tmp_path_factory.mktemp("writing_base"), load_config(overrides=model), epochs=15,
                         lr=3e-3, pool=SyntheticConfig(sites=3, patients=40, visits=4, seed=500, image_size=32,
                                                       site_prefix="public", first_site_index=100))
    fed = tmp_path_factory.mktemp("four_writing_sites")
    generate_federation(fed, SyntheticConfig(sites=4, patients=16, visits=4, seed=9, image_size=32))
    shuffled = shuffled_reports(find_manifests(fed)[-1], seed=0)

    def cider(name: str, robust: str, attacked: bool) -> float:
        apps = [client_app] * 3 + [poisoning_app("boost", 8.0, train_manifest=shuffled) if attacked else client_app]
        grid = InProcessGrid(apps, [{"partition-id": i, "num-partitions": 4} for i in range(4)])
        out = tmp_path_factory.mktemp(name)
        result = run_from_values(grid, {**model, "base-dir": str(base), "data-root": str(fed), "out-dir": str(out),
                                        "federation.rounds": 3, "federation.robust": robust,
                                        "federation.krum_byzantine": 1, "federation.krum_keep": 3})
        assert result.status == "completed"
        return result.metrics["cider"]

    clean = cider("clean", "none", False)
    undefended = cider("undefended", "none", True)
    defended = cider("defended", "multikrum", True)
    print(f"test CIDEr: clean {clean:.3f}, label-flipping site under the mean {undefended:.3f}, "
          f"under multikrum {defended:.3f}")
    assert clean > 0.5, clean  # the model writes reports
    assert undefended < 0.8 * clean, (undefended, clean)  # the attack hurts
    assert defended > undefended + 0.15 * clean, (defended, undefended, clean)
    assert abs(clean - defended) < abs(clean - undefended) - 0.1 * clean
