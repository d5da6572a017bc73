"""Exams as the model sees them: small metadata tensors in memory, images streamed per batch.

Records, token ids, profiles, visit indices, prior links and labels of a site are small
tensors; each row's image is a key into the site's ImageStore (fedtar.data.image_store), read
from disk (through a bounded cache) only when a batch needs it, priors by the same keys. So a
site's memory is bounded by ``data.cache_mib`` and the batch, not by its number of exams, and
the batches are the ones a full pre-load gave (same rows, same values). Batches are index
gathers: no per-sample Python on the hot path except decoding each file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from data_adapters.findings import CHEXPERT_OBSERVATIONS, change_targets
from data_adapters.image_mode import read_failure
from data_adapters.records import ExamRecord, Manifest, SkippedRow, assign_visits, log_skips, read_manifest
from fedtar.data.demographics import profile_vectors
from fedtar.data.image_store import ImageReader, ImageStore, StoreUnion, check_image, image_reader
from fedtar.data.tokenizer import ReportTokenizer

log = logging.getLogger(__name__)
DEFAULT_CACHE_MIB = 256
# Reports tokenized this many at a time: the tokenizer's per-text objects (tokens, offsets) of a
# whole site at once cost about 4 KB per exam at peak (benchmarks/streaming_memory.py), more than the ids kept.
ENCODE_CHUNK = 1024


@dataclass
class Batch:
    images: torch.Tensor         # (B, C, H, W)
    input_ids: torch.Tensor      # (B, L) [BOS] report [EOS] [PAD]...
    profiles: torch.Tensor       # (B, F) demographic profile vectors
    q: torch.Tensor              # (B, K) soft assignment q_p (the profile itself before a site sets it)
    visit_index: torch.Tensor    # (B,) 1..T
    has_prior: torch.Tensor      # (B,) bool
    prior_images: torch.Tensor   # (B, C, H, W), zeros where no prior
    prior_ids: torch.Tensor      # (B, L) prior report, [PAD] where no prior
    labels: torch.Tensor         # (B, F) ground-truth severities 0-3, -100 where unknown (may be F=0)
    index: torch.Tensor          # (B,) row in the Exams
    change: torch.Tensor         # (B, 14) per CheXpert observation, index into CHANGE_TARGETS against the
                                 # prior exam's severities; -100 where unknown (first visit, no labels)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass
class Exams:
    """One site's (or split's, or several sites') exams; records stay on the site."""

    records: list[ExamRecord]
    input_ids: torch.Tensor      # (N, L) token ids, stored as int32 (half of int64 per exam); batches get int64
    profiles: torch.Tensor
    visit_index: torch.Tensor
    prior_index: torch.Tensor    # row of the prior exam, -1 for a first visit
    image_key: torch.Tensor      # (N,) each row's key in `store`
    store: ImageStore | StoreUnion
    q: torch.Tensor | None = None  # (N, K) q_p from the site's assigner; None: use profiles
    labels: torch.Tensor | None = None  # (N, F) int8 severities per label_names, -100 unknown; batches get int64
    label_names: tuple[str, ...] = ()
    skipped: list[SkippedRow] = field(default_factory=list)
    batch_rows: torch.Tensor | None = None  # rows batches draw from; None: all
    workers: int = 0             # DataLoader worker processes reading images (0: in this process)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, rows: Sequence[int] | torch.Tensor) -> Exams:
        """Rows by position; prior links that leave the subset become -1. Shares the image store."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        remap = torch.full((len(self),), -1, dtype=torch.long)
        remap[rows] = torch.arange(len(rows))
        prior = self.prior_index[rows]
        prior = torch.where(prior >= 0, remap[prior.clamp(min=0)], prior)
        return Exams(
            records=[self.records[i] for i in rows.tolist()],
            input_ids=self.input_ids[rows], profiles=self.profiles[rows],
            visit_index=self.visit_index[rows], prior_index=prior, image_key=self.image_key[rows],
            store=self.store, q=None if self.q is None else self.q[rows], skipped=self.skipped,
            labels=None if self.labels is None else self.labels[rows], label_names=self.label_names,
            workers=self.workers,
        )

    def where(self, split: str | None = None, visit: int | None = None) -> Exams:
        """Exams of one split and/or visit index to batch; their priors come along unbatched."""
        keep = [i for i, r in enumerate(self.records)
                if (split is None or r.split == split) and (visit is None or r.visit_index == visit)]
        priors = {int(self.prior_index[i]) for i in keep if self.prior_index[i] >= 0}
        rows = sorted(set(keep) | priors)
        sub = self.subset(rows)
        keep_set = set(keep)
        sub.batch_rows = torch.tensor([j for j, i in enumerate(rows) if i in keep_set], dtype=torch.long)
        return sub

    def rows(self) -> torch.Tensor:
        """The rows that batches draw from (priors carried along by `where` are not among them),
        less any whose image or prior image failed to read since loading."""
        rows = self.batch_rows if self.batch_rows is not None else torch.arange(len(self))
        bad = self.store.bad
        if not bad.any():
            return rows
        prior = self.prior_index[rows]
        broken = bad[self.image_key[rows]] | ((prior >= 0) & bad[self.image_key[prior.clamp(min=0)]])
        return rows[~broken]

    def num_examples(self) -> int:
        return len(self.rows())

    def gather(self, idx: torch.Tensor) -> Batch | None:
        """The batch of rows `idx`, images read now; rows whose image (or prior image) cannot be
        read are left out and reported; None if none is left."""
        return self._gather(idx)[0]

    def _gather(self, idx: torch.Tensor) -> tuple[Batch | None, list[tuple[int, SkippedRow]]]:
        prior = self.prior_index[idx]
        has_prior = prior >= 0
        wanted = torch.cat([self.image_key[idx], self.image_key[prior[has_prior]]])
        keys, inverse = torch.unique(wanted, return_inverse=True)
        got = self.store.load(keys)
        if got.images is None:
            return None, got.failed
        slot = torch.cumsum(got.ok, 0) - 1            # key -> row of got.images (where ok)
        own, prior_slot = inverse[:len(idx)], inverse[len(idx):]
        keep = got.ok[own].clone()
        keep[has_prior] &= got.ok[prior_slot]
        images = got.images[slot[own].clamp(min=0)]
        prior_images = torch.zeros_like(images)
        prior_images[has_prior] = got.images[slot[prior_slot].clamp(min=0)]
        safe = prior.clamp(min=0)
        prior_ids = self.input_ids[safe].long()
        prior_ids = torch.where(has_prior[:, None], prior_ids, torch.zeros_like(prior_ids))
        batch = Batch(
            images=images, input_ids=self.input_ids[idx].long(), profiles=self.profiles[idx],
            q=(self.profiles if self.q is None else self.q)[idx], visit_index=self.visit_index[idx],
            has_prior=has_prior, prior_images=prior_images, prior_ids=prior_ids,
            labels=self.labels[idx].long() if self.labels is not None else idx.new_zeros((len(idx), 0)), index=idx,
            change=self._change(idx, prior, has_prior),
        )
        if bool(keep.all()):
            return batch, got.failed
        if not keep.any():
            return None, got.failed
        return Batch(**{f.name: getattr(batch, f.name)[keep] for f in fields(batch)}), got.failed

    def _change(self, idx: torch.Tensor, prior: torch.Tensor, has_prior: torch.Tensor) -> torch.Tensor:
        """Change targets of rows `idx` from their and their priors' severities (the change head's
        training signal); observations the labels do not name stay -100."""
        out = torch.full((len(idx), len(CHEXPERT_OBSERVATIONS)), -100, dtype=torch.long)
        named = [(j, CHEXPERT_OBSERVATIONS.index(n)) for j, n in enumerate(self.label_names)
                 if n in CHEXPERT_OBSERVATIONS]
        if self.labels is None or not named:
            return out
        src, dst = (list(t) for t in zip(*named))
        targets = change_targets(self.labels[prior.clamp(min=0)][:, src], self.labels[idx][:, src])
        out[:, dst] = torch.where(has_prior[:, None], targets, torch.full_like(targets, -100))
        return out

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Batches in order (or shuffled by `generator`), read by `workers` processes if > 0."""
        rows = self.rows()
        if shuffle:
            rows = rows[torch.randperm(len(rows), generator=generator)]
        chunks = [rows[start:start + batch_size] for start in range(0, len(rows), batch_size)]
        if self.workers <= 0:
            for chunk in chunks:
                batch = self.gather(chunk)
                if batch is not None:
                    yield batch
            return
        loader = DataLoader(_Chunks(self, chunks), batch_size=None, shuffle=False, num_workers=self.workers,
                            collate_fn=_as_is, prefetch_factor=2)
        for batch, failed in loader:
            self.store.mark_bad(failed)   # what a worker found unreadable, known here too
            if batch is not None:
                yield batch


def _as_is(item):
    return item


class _Chunks(Dataset):
    """Precomputed index chunks as a map-style dataset: a worker gathers one whole batch."""

    def __init__(self, exams: Exams, chunks: list[torch.Tensor]):
        self.exams, self.chunks = exams, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> tuple[Batch | None, list[tuple[int, SkippedRow]]]:
        return self.exams._gather(self.chunks[i])


def encode_reports(tokenizer: ReportTokenizer, texts: list[str], max_tokens: int) -> torch.Tensor:
    """Token ids of texts as int32, encoded ENCODE_CHUNK at a time (memory bounded, not by the site's size)."""
    chunks = [tokenizer.encode_batch(texts[i:i + ENCODE_CHUNK], max_tokens).to(torch.int32)
              for i in range(0, len(texts), ENCODE_CHUNK)]
    return torch.cat(chunks) if chunks else torch.zeros(0, max_tokens, dtype=torch.int32)


def load_exams(
    source: Manifest | str | Path | Sequence[ExamRecord],
    tokenizer: ReportTokenizer,
    image_size: int = 64,
    max_tokens: int = 96,
    section: str = "findings",
    profile_features: Sequence[str] = ("hash", "age", "sex"),
    reader: ImageReader | None = None,
    cache_mib: float = DEFAULT_CACHE_MIB,
    workers: int = 0,
) -> Exams:
    """A site's exams: metadata now, images on demand; rows whose image file is missing or not
    a readable image (a header check) are skipped and listed."""
    if isinstance(source, (str, Path)):
        source = read_manifest(source)
    if isinstance(source, Manifest):
        records, skipped, origin = source.records, list(source.skipped), source.path
    else:
        records, skipped, origin = list(source), [], Path("<records>")
    reader = reader or image_reader(image_size)
    readable: set[int] = set()
    for r in records:
        try:
            check_image(r.image_paths[0], reader)
            readable.add(id(r))
        except Exception as e:  # any reader failure: corrupt file, wrong format, missing file
            skipped.append(SkippedRow(origin, r.line, f"unreadable {read_failure(r.image_paths[0], e)}"))
    log_skips(log, origin, skipped)
    # Visits are recomputed after the drops, so no patient sequence has a hole.
    kept = assign_visits([r for r in records if id(r) in readable])
    key_to_row = {(r.site_id, r.patient_id, r.visit_index): j for j, r in enumerate(kept)}
    prior = torch.tensor([key_to_row.get((r.site_id, r.patient_id, r.visit_index - 1), -1) for r in kept],
                         dtype=torch.long)
    label_names = tuple(sorted({k for r in kept for k in r.labels}))
    labels = torch.tensor([[r.labels.get(k, -100) for k in label_names] for r in kept],  # int8: -100 and 0-3
                          dtype=torch.int8).reshape(len(kept), len(label_names))
    store = ImageStore([r.image_paths[0] for r in kept], [r.line for r in kept], origin, reader,
                       int(cache_mib * 2**20), skipped)
    return Exams(
        records=kept,
        input_ids=encode_reports(tokenizer, [r.report(section) for r in kept], max_tokens),
        profiles=profile_vectors(kept, profile_features),
        visit_index=torch.tensor([r.visit_index for r in kept], dtype=torch.long),
        prior_index=prior,
        image_key=torch.arange(len(kept)),
        store=store,
        labels=labels,
        label_names=label_names,
        skipped=skipped,
        workers=workers,
    )


def _union_labels(parts: Sequence[Exams]) -> tuple[torch.Tensor | None, tuple[str, ...]]:
    """The parts' labels over the union of their names (-100 where a part has no such label): sites whose
    archives name different findings still pool their supervision."""
    names = tuple(sorted({n for p in parts if p.labels is not None for n in p.label_names}))
    if not names:
        return None, ()
    blocks = []
    for p in parts:
        block = torch.full((len(p), len(names)), -100, dtype=torch.int8)
        if p.labels is not None and p.label_names:
            block[:, [names.index(n) for n in p.label_names]] = p.labels.to(torch.int8)
        blocks.append(block)
    return torch.cat(blocks), names


def concat_exams(parts: Sequence[Exams]) -> Exams:
    """Several sites' exams as one (central training): metadata concatenated, images streamed
    from each site's own store; prior links, batch rows and each site's q_p follow."""
    offsets, total = [], 0
    for p in parts:
        offsets.append(total)
        total += len(p)
    store = StoreUnion([p.store for p in parts])
    prior = torch.cat([torch.where(p.prior_index >= 0, p.prior_index + o, p.prior_index)
                       for p, o in zip(parts, offsets)])
    rows = torch.cat([p.rows() + o for p, o in zip(parts, offsets)])
    keys = [store.translate(p.store, p.image_key) for p in parts]
    labels, label_names = _union_labels(parts)
    return Exams(
        records=[r for p in parts for r in p.records],
        input_ids=torch.cat([p.input_ids for p in parts]),
        profiles=torch.cat([p.profiles for p in parts]), visit_index=torch.cat([p.visit_index for p in parts]),
        prior_index=prior, image_key=torch.cat(keys), store=store,
        skipped=[s for p in parts for s in p.skipped], batch_rows=rows,
        q=None if any(p.q is None for p in parts) else torch.cat([p.q for p in parts]),
        labels=labels, label_names=label_names,
        workers=max((p.workers for p in parts), default=0),
    )
