"""The federated GMM (demographics.gmm_scope = federated) and BIC's choice of components."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, RecordDict

from aggregator.server_app import run_from_values
from clients.client_app import app as client_app
from clients.node_policy import NodeRefusal
from fedtar.data.demographics import (
    GMM_RECORD,
    GMM_STATISTICS,
    DiagonalGMM,
    PatientAssigner,
    site_statistics,
)
from fedtar.generator.parameters import state_from_record
from test_federation import grid_for, values

CENTRES = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]])


def clusters(counts: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([CENTRES[i] + 0.1 * torch.randn(n, 2, generator=g) for i, n in enumerate(counts)])


def test_bic_chooses_the_number_of_clusters_and_pads_to_q_width():
    assigner = PatientAssigner.fit(clusters([60, 60, 60], 0), components=8, select="bic")
    weights = assigner.gmm.log_weights.exp()
    assert weights.shape == (8,)
    assert int((weights > 0.05).sum()) == 3 and float(weights[3:].sum()) == 0.0
    fixed = PatientAssigner.fit(clusters([60, 60, 60], 0), components=8)
    assert int((fixed.gmm.log_weights.exp() > 0.05).sum()) > 3  # a fixed fit spends all 8 components


def test_site_sums_add_up_to_the_sums_over_all_rows():
    x = clusters([40, 30, 50], 1)
    gmm = DiagonalGMM.fit(x, 3, seed=0)
    parts = [site_statistics(x[:50], {3: gmm}), site_statistics(x[50:], {3: gmm})]
    whole = site_statistics(x, {3: gmm})
    for name, value in whole.items():
        assert torch.allclose(parts[0][name] + parts[1][name], value, atol=1e-9), name


def _fed(tiny_base, tiny_federation, tmp_path, **extra):
    return values(tiny_base, tiny_federation, tmp_path, federation__rounds=1, demographics__features=["age", "sex"],
                  demographics__gmm_scope="federated", **extra)


def test_a_federated_gmm_gives_every_site_the_same_components(tiny_base, tiny_federation, tmp_path):
    grid = grid_for()
    result = run_from_values(grid, _fed(tiny_base, tiny_federation, tmp_path, demographics__gmm_select="bic"))
    assert result.status == "completed"
    queries = [m for m in grid.sent if m.metadata.message_type == "query"]
    rounds = [m for m in grid.sent if m.metadata.message_type in ("train", "evaluate")]
    assert queries and rounds
    # Every train and evaluate message carries one GMM, the same for all sites.
    fitted = [state_from_record(m.content[GMM_RECORD]) for m in rounds]
    assert all(torch.equal(f["means"], fitted[0]["means"]) for f in fitted)
    assert fitted[0]["means"].shape == (4, 2)  # TINY_FED's 4 slots, 2 features
    # What the sites sent back: per-component sums only (no tensor as long as the patient count).
    replies = [r for r in grid.replies if r.content.array_records.get(GMM_STATISTICS) is not None]
    assert len(replies) == len(queries)
    for reply in replies:
        assert set(reply.content.array_records) == {GMM_STATISTICS}
        for name, value in state_from_record(reply.content[GMM_STATISTICS]).items():
            assert value.numel() <= 4 * 2, (name, value.shape)
    # The same profile gets the same q at every site (a site's own GMM would not promise that).
    gmm = DiagonalGMM.from_state_dict(fitted[0])
    probe = torch.tensor([[0.5, 1.0], [-1.0, -1.0]])
    assert torch.allclose(gmm.responsibilities(probe).sum(-1), torch.ones(2))


def test_a_site_that_sends_bad_statistics_is_left_out(tiny_base, tiny_federation, tmp_path, caplog):
    def nan_statistics(msg, context):
        reply = client_app(msg, context)
        if msg.metadata.message_type == "query":
            state = state_from_record(reply.content[GMM_STATISTICS])
            reply.content[GMM_STATISTICS] = type(reply.content[GMM_STATISTICS])(
                {k: torch.full_like(v, float("nan")) for k, v in state.items()})
        return reply

    grid = grid_for(apps=[client_app, client_app, nan_statistics])
    result = run_from_values(grid, _fed(tiny_base, tiny_federation, tmp_path))
    assert result.status == "completed"
    assert "not finite: left out" in caplog.text
    rounds = [m for m in grid.sent if m.metadata.message_type == "train"]
    gmm = state_from_record(rounds[0].content[GMM_RECORD])
    assert all(torch.isfinite(v).all() for k, v in gmm.items() if k != "log_weights")


def test_too_few_answers_stop_the_run_before_round_one(tiny_base, tiny_federation, tmp_path):
    def refuses_queries(msg, context):
        if msg.metadata.message_type == "query":
            raise RuntimeError("no statistics from this site")
        return client_app(msg, context)

    grid = grid_for(apps=[client_app, refuses_queries, refuses_queries])
    result = run_from_values(grid, _fed(tiny_base, tiny_federation, tmp_path, federation__round_retries=1))
    assert result.status == "stopped" and result.rounds_done == 0
    assert not [m for m in grid.sent if m.metadata.message_type == "train"]
    assert "federated GMM" in (tmp_path / "results.json").read_text()


def test_a_malformed_gmm_is_refused_by_the_site(tiny_base, tiny_federation, tmp_path):
    grid = grid_for()
    run_from_values(grid, _fed(tiny_base, tiny_federation, tmp_path))
    sent = next(m for m in grid.sent if m.metadata.message_type == "train")
    bad = dict(state_from_record(sent.content[GMM_RECORD]))
    bad["variances"] = -bad["variances"]
    content = RecordDict({"global": sent.content["global"], "config": sent.content["config"],
                          GMM_RECORD: ArrayRecord(bad)})
    context = Context(run_id=1, node_id=1000, node_config={"partition-id": 0, "num-partitions": 3},
                      state=RecordDict(), run_config={})
    with pytest.raises(NodeRefusal, match="non-positive variances"):
        client_app(Message(content=content, dst_node_id=1000, message_type="train"), context)
