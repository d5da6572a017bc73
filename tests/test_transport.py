"""federation.transport_dtype: bfloat16 uploads, float32 aggregation and global."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

from aggregator.inprocess_grid import InProcessGrid
from aggregator.strategies import FedAvg, FedTAR
from clients.client_app import _reply
from fedtar.config import load_config
from fedtar.generator.parameters import TensorSpec, decode_state, encode_state

SPECS = [TensorSpec("enc.lora_A", (64, 4), torch.float32), TensorSpec("dec.lora_B", (4, 96), torch.float32)]


def test_bfloat16_round_trip_halves_the_bytes_and_refuses_other_dtypes():
    g = torch.Generator().manual_seed(0)
    state = {s.name: torch.randn(s.shape, generator=g) for s in SPECS}
    wire = encode_state(state, "bfloat16")
    back = decode_state(wire, "bfloat16")
    for name, value in state.items():
        assert back[name].dtype == torch.float32
        assert torch.equal(back[name], value.to(torch.bfloat16).float())  # exactly the rounded values
        assert 0 < (back[name] - value).abs().max() <= value.abs().max() * 2**-8
    float_bytes, bf16_bytes = ArrayRecord(state).count_bytes(), ArrayRecord(wire).count_bytes()
    assert bf16_bytes < 0.55 * float_bytes
    with pytest.raises(ValueError, match="bfloat16 transport"):
        decode_state(state, "bfloat16")  # a float32 reply where bfloat16 was declared
    assert encode_state(state, "float32") is state and decode_state(state, "float32") is state
    with pytest.raises(ValueError, match="transport_dtype"):
        encode_state(state, "float16")


def test_transport_dtype_is_validated_and_refused_under_dp():
    with pytest.raises(ValueError, match="transport_dtype"):
        load_config(overrides={"federation.transport_dtype": "float16"})
    with pytest.raises(ValueError, match="clip bound"):
        load_config(overrides={"federation.transport_dtype": "bfloat16", "privacy.clip": 1.0})


def site_app(i: int, record_names: list[str]):
    """A site whose reply leaves through the ClientApp's own _reply (where uploads are encoded)."""

    def app(msg: Message, context) -> Message:
        g = torch.Generator().manual_seed(i)
        start = msg.content["global"].to_torch_state_dict()
        content, metrics = RecordDict(), {"num-examples": float(2 + i), "train-loss": 1.0}
        for name in record_names:
            content[name] = ArrayRecord({k: v + torch.randn(v.shape, generator=g) for k, v in start.items()})
            metrics[f"n-{name}"] = float(2 + i)
        content["metrics"] = MetricRecord(metrics)
        return _reply(msg, content, context)

    return app


@pytest.mark.parametrize("strategy,records", [(FedAvg, ["arrays"]), (FedTAR, ["visit-1", "visit-2"])])
def test_bfloat16_uploads_are_accepted_and_the_global_stays_float32(strategy, records):
    cfg = load_config(overrides={"federation.strategy": strategy.name, "federation.transport_dtype": "bfloat16",
                                 "policy.kind": "uniform"})
    grid = InProcessGrid([site_app(i, records) for i in range(3)], [{} for _ in range(3)], record=True)
    glob = {s.name: torch.randn(s.shape, generator=torch.Generator().manual_seed(9)) for s in SPECS}
    s = strategy(cfg, SPECS, {})
    replies = list(grid.send_and_receive(s.configure_train(1, ArrayRecord(glob), None, grid)))
    sent = replies[0].content[records[0]].to_torch_state_dict()
    assert all(v.dtype == torch.int16 for v in sent.values())  # what travelled: 16 bits per value
    arrays, metrics = s.aggregate_train(1, replies)
    assert metrics["valid-replies"] == 3 and not s.report.rejected
    new = arrays.to_torch_state_dict()
    assert all(v.dtype == torch.float32 for v in new.values())
    if strategy is FedAvg:  # the sample-weighted mean of the rounded values the sites sent
        states = [{k: v.view(torch.bfloat16).double() for k, v in r.content["arrays"].to_torch_state_dict().items()}
                  for r in sorted(replies, key=lambda r: r.metadata.src_node_id)]
        w = [2.0, 3.0, 4.0]
        for k in new:
            expected = sum(st[k] * wi for st, wi in zip(states, w)) / sum(w)
            torch.testing.assert_close(new[k].double(), expected, atol=1e-6, rtol=1e-6)
    # A site sending float32 where bfloat16 is declared is left out, with the reason.
    cfg32 = load_config(overrides={"federation.strategy": strategy.name, "policy.kind": "uniform"})
    grid32 = InProcessGrid([site_app(i, records) for i in range(3)], [{} for _ in range(3)])
    s32_sites = strategy(cfg32, SPECS, {})
    float_replies = list(grid32.send_and_receive(s32_sites.configure_train(1, ArrayRecord(glob), None, grid32)))
    s2 = strategy(cfg, SPECS, {})
    s2.configure_train(1, ArrayRecord(glob), None, grid32)
    s2.aggregate_train(1, float_replies)
    assert len(s2.report.rejected) == 3 and "bfloat16 transport" in s2.report.rejected[0].reason
