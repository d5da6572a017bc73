"""The Python API (fedtar.api): the examples of docs/reference/api.md run as they are written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import fedtar
from fedtar import api

DOC = Path(__file__).resolve().parents[1] / "docs" / "reference" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_api_names_are_exported_and_lazy():
    assert fedtar.API_NAMES == set(api.__all__) - {"config"}  # fedtar.config is a module of the same name
    assert fedtar.pretrain is api.pretrain
    for name in api.__all__:
        assert getattr(api, name) is not None
    assert fedtar.simulate is api.simulate and fedtar.FedTAR is api.FedTAR


def test_the_documented_examples_run(tmp_path, monkeypatch, capsys):
    """Every example of the API page, in order, in one namespace, from an empty folder (tiny sizes)."""
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    # One thread: these examples check that the API runs, not its numbers, and at these sizes two threads
    # only add contention (on a busy 2-core machine they took 137 s against about 10 s on one).
    torch.set_num_threads(1)
    namespace: dict = {"__name__": "api_examples"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}[python block {i + 1}]", "exec"), namespace)  # noqa: S102
    summaries = namespace["summaries"]
    assert [s.strategy for s in summaries] == ["fedtar", "fedavg"]
    assert all(s.status == "completed" for s in summaries)
    assert namespace["result"].status == "completed"
    assert 0 <= namespace["evaluation"].overall["bleu4"] <= 1
    out = capsys.readouterr().out
    assert "fedtar" in out and "fedavg" in out
