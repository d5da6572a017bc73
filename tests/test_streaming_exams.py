"""Exams streamed from disk: the values a full pre-load gave, memory bounded by data.cache_mib,
images that break after loading skipped and reported, the union of sites read from each site."""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose, LoadImage, Resize, ScaleIntensity
from PIL import Image

from data_adapters.records import read_manifest
from fedtar.data.exams import Batch, concat_exams, load_exams
from fedtar.data.image_store import image_reader
from fedtar.data.tokenizer import ReportTokenizer


@pytest.fixture()
def tokenizer(small_federation) -> ReportTokenizer:
    return ReportTokenizer.train(r.findings for m in small_federation for r in read_manifest(m).records)


def _same(a: Batch, b: Batch) -> None:
    for f in fields(Batch):
        assert torch.equal(getattr(a, f.name), getattr(b, f.name)), f.name


def test_batched_transform_equals_monai_per_image(tmp_path):
    """Sources cached as stored, finished per batch: bitwise what LoadImage(float32) +
    ScaleIntensity + Resize gave per image (down, up, same size, constant, 16-bit, JPEG)."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(64, 64), (64, 64), (50, 77), (16, 16), (130, 200)]]
    arrays.append(np.full((40, 40), 7, dtype=np.uint8))
    arrays.append(rng.integers(0, 65535, (30, 30), dtype=np.uint16))
    paths = []
    for i, a in enumerate(arrays):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(a).save(paths[-1])
    paths.append(tmp_path / "j.jpg")
    Image.fromarray(arrays[0]).save(paths[-1], quality=90)
    for size in (32, 64):
        reader = image_reader(size)
        sources = [reader.decode(str(p)) for p in paths]
        assert sources[0].dtype == torch.uint8  # what the cache keeps
        batch = reader.finish(sources)
        monai = Compose([LoadImage(image_only=True, ensure_channel_first=True), ScaleIntensity(minv=0.0, maxv=1.0),
                         Resize((size, size))])
        for i, p in enumerate(paths):
            assert torch.equal(batch[i], torch.as_tensor(monai(str(p)).as_tensor())), (size, p.name)


def test_cache_is_bounded_and_batches_do_not_depend_on_it(small_federation, tokenizer):
    tiny = load_exams(small_federation[0], tokenizer, image_size=32, cache_mib=3 * 64 * 64 / 2**20)  # 3 sources
    large = load_exams(small_federation[0], tokenizer, image_size=32, cache_mib=64)
    for _ in range(2):
        g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        for a, b in zip(tiny.batches(5, shuffle=True, generator=g1), large.batches(5, shuffle=True, generator=g2)):
            _same(a, b)
    assert len(tiny.store._cache) == 3 and tiny.store._cached <= 3 * 64 * 64
    assert len(large.store._cache) == len(large)  # all fit: each image is decoded once per run
    assert all(s.dtype == torch.uint8 for s in large.store._cache.values())


def _broken_site(manifest: Path, dest: Path) -> Path:
    shutil.copytree(manifest.parent, dest)
    return dest / "manifest.csv"


def test_image_broken_after_loading_is_skipped_and_reported(small_federation, tokenizer, tmp_path):
    manifest = _broken_site(small_federation[0], tmp_path / "site")
    exams = load_exams(manifest, tokenizer, image_size=32, cache_mib=0)
    assert not exams.skipped
    first = next(i for i, r in enumerate(exams.records) if r.visit_index == 1)
    child = int(torch.nonzero(exams.prior_index == first)[0])  # its next visit: the broken image is its prior
    exams.records[first].image_paths[0].write_bytes(b"truncated")
    batches = list(exams.batches(8))
    seen = torch.cat([b.index for b in batches]).tolist()
    assert first not in seen and child not in seen and len(seen) == len(exams) - 2
    assert exams.num_examples() == len(exams) - 2 and first not in exams.rows().tolist()
    assert len(exams.skipped) == 1 and "unreadable image" in exams.skipped[0].reason
    assert exams.skipped[0].line == exams.records[first].line and str(manifest) in str(exams.skipped[0])
    list(exams.batches(8))
    assert len(exams.skipped) == 1  # reported once


def test_broken_image_found_by_a_worker_is_known_to_the_run(small_federation, tokenizer, tmp_path):
    manifest = _broken_site(small_federation[0], tmp_path / "site")
    exams = load_exams(manifest, tokenizer, image_size=32, cache_mib=0)
    reference = list(exams.batches(6, shuffle=True, generator=torch.Generator().manual_seed(2)))
    exams.workers = 2
    streamed = list(exams.batches(6, shuffle=True, generator=torch.Generator().manual_seed(2)))
    assert len(streamed) == len(reference)
    for a, b in zip(reference, streamed):
        _same(a, b)
    exams.records[0].image_paths[0].unlink()
    seen = torch.cat([b.index for b in exams.batches(6)]).tolist()
    assert 0 not in seen and bool(exams.store.bad[exams.image_key[0]]) and len(exams.skipped) == 1


def test_union_reads_each_site_store_and_keeps_its_q(small_federation, tokenizer):
    sites = [load_exams(m, tokenizer, image_size=32) for m in small_federation]
    for i, s in enumerate(sites):
        s.q = torch.full((len(s), 2), float(i))  # stands for each site's own assigner
    parts = [s.where(split="train") for s in sites]
    union = concat_exams(parts)
    assert union.num_examples() == sum(p.num_examples() for p in parts)
    whole = union.gather(union.rows())
    offset = 0
    for i, p in enumerate(parts):
        own = p.gather(p.rows())
        n = len(own.index)
        assert torch.equal(whole.images[offset:offset + n], own.images)
        assert torch.equal(whole.prior_images[offset:offset + n], own.prior_images)
        assert torch.equal(whole.input_ids[offset:offset + n], own.input_ids)
        assert (whole.q[offset:offset + n] == i).all()
        offset += n
    assert [s.store for s in sites] == union.store.stores  # no copy of any image block
    again = concat_exams([union, sites[0].where(split="test")])  # a union of a union and a part of a site
    assert torch.equal(again.gather(again.rows()[:len(whole.index)]).images, whole.images)
