"""The per-process site-runtime cache is bounded by the bytes of its tensors, not a count."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import torch
from torch import nn

import clients.site_runtime as site_runtime
from conftest import TINY_FED
from data_adapters.records import find_manifests


def test_tensor_bytes_counts_each_storage_once():
    t = torch.zeros(10)
    obj = SimpleNamespace(a=t, b=[t, t[2:]], m=nn.Linear(4, 2), d={"x": torch.zeros(3, dtype=torch.float64)},
                          f=len, name="site1")
    assert site_runtime.tensor_bytes(obj) == 10 * 4 + (4 * 2 + 2) * 4 + 3 * 8


def test_runtime_cache_keeps_what_fits_and_always_the_site_asked_for(tiny_base, tiny_federation, monkeypatch):
    monkeypatch.setattr(site_runtime, "_RUNTIMES", OrderedDict())
    manifests = find_manifests(tiny_federation)
    roomy = {**TINY_FED, "client.runtime_cache_mib": 1024.0}
    loaded = [site_runtime.site_runtime(roomy, tiny_base, m, i) for i, m in enumerate(manifests)]
    assert len(site_runtime._RUNTIMES) == 3
    assert site_runtime.site_runtime(roomy, tiny_base, manifests[0], 0) is loaded[0], "a hit reuses the runtime"
    one = site_runtime.tensor_bytes(loaded[0]) / 2**20
    assert one > 0
    # A budget for about two runtimes: asking for a fourth (another config) drops the least recently used.
    tight = {**TINY_FED, "client.runtime_cache_mib": 2.5 * one}
    newest = site_runtime.site_runtime(tight, tiny_base, manifests[2], 2)
    kept = list(site_runtime._RUNTIMES.values())
    assert kept[-1] is newest and len(kept) == 2 and kept[0] is loaded[0], "LRU: site 0 was used after sites 1 and 2"
    # Nothing fits: the site asked for stays alone.
    alone = site_runtime.site_runtime({**TINY_FED, "client.runtime_cache_mib": 0.0}, tiny_base, manifests[1], 1)
    assert list(site_runtime._RUNTIMES.values()) == [alone]
