"""Exams as model-ready tensors, with each exam's prior exam attached.

A site's exams are loaded once through MONAI transforms into one tensor
block (images, token ids, profiles, visit indices, prior links). Batches are
then index gathers on those tensors: no per-sample Python on the hot path.
Unreadable images are skipped and reported like bad manifest rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from monai.transforms import Compose, LoadImage, Resize, ScaleIntensity

from fedtar.demographics import profile_vectors
from fedtar.tokenizer import ReportTokenizer

from .ct import volume_transform
from .records import ExamRecord, Manifest, SkippedRow, assign_visits, read_manifest

log = logging.getLogger(__name__)


def image_transform(image_size: int, volume_depth: int = 0, hu_windows: Sequence[str] = (),
                    voxel_spacing: Sequence[float] = ()) -> Compose:
    """Radiographs: load (PNG/JPG via PIL), scale to [0, 1], resize.
    CT (volume_depth > 0): NIfTI HU volumes as one channel per HU window (data_adapters.ct)."""
    if volume_depth:
        return volume_transform(image_size, volume_depth, hu_windows or ("lung", "mediastinal", "bone"),
                                voxel_spacing)
    return Compose([
        LoadImage(image_only=True, ensure_channel_first=True),
        ScaleIntensity(minv=0.0, maxv=1.0),
        Resize((image_size, image_size)),
    ])


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
    index: torch.Tensor          # (B,) row in the ExamTensors

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass
class ExamTensors:
    """One site's (or split's) exams as aligned tensors; records stay on the site."""

    records: list[ExamRecord]
    images: torch.Tensor
    input_ids: torch.Tensor
    profiles: torch.Tensor
    visit_index: torch.Tensor
    prior_index: torch.Tensor    # row of the prior exam, -1 for a first visit
    q: torch.Tensor | None = None  # (N, K) q_p from the site's assigner; None: use profiles
    labels: torch.Tensor | None = None  # (N, F) severities per label_names, -100 unknown
    label_names: tuple[str, ...] = ()
    skipped: list[SkippedRow] = field(default_factory=list)
    batch_rows: torch.Tensor | None = None  # rows batches draw from; None: all

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, rows: Sequence[int] | torch.Tensor) -> ExamTensors:
        """Rows by position; prior links that leave the subset become -1."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        remap = torch.full((len(self),), -1, dtype=torch.long)
        remap[rows] = torch.arange(len(rows))
        prior = self.prior_index[rows]
        prior = torch.where(prior >= 0, remap[prior.clamp(min=0)], prior)
        return ExamTensors(
            records=[self.records[i] for i in rows.tolist()],
            images=self.images[rows], input_ids=self.input_ids[rows], profiles=self.profiles[rows],
            visit_index=self.visit_index[rows], prior_index=prior,
            q=None if self.q is None else self.q[rows], skipped=self.skipped,
            labels=None if self.labels is None else self.labels[rows], label_names=self.label_names,
        )

    def where(self, split: str | None = None, visit: int | None = None) -> ExamTensors:
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
        """The rows that batches draw from (priors carried along by `where` are not among them)."""
        return self.batch_rows if self.batch_rows is not None else torch.arange(len(self))

    def num_examples(self) -> int:
        return len(self.rows())

    def gather(self, idx: torch.Tensor) -> Batch:
        prior = self.prior_index[idx]
        has_prior = prior >= 0
        safe = prior.clamp(min=0)
        mask = has_prior.view(-1, *([1] * (self.images.dim() - 1)))
        prior_ids = torch.where(has_prior[:, None], self.input_ids[safe], torch.zeros_like(self.input_ids[safe]))
        return Batch(
            images=self.images[idx], input_ids=self.input_ids[idx], profiles=self.profiles[idx],
            q=(self.profiles if self.q is None else self.q)[idx], visit_index=self.visit_index[idx],
            has_prior=has_prior,
            prior_images=self.images[safe] * mask, prior_ids=prior_ids,
            labels=self.labels[idx] if self.labels is not None else idx.new_zeros((len(idx), 0)), index=idx,
        )

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        rows = self.rows()
        if shuffle:
            rows = rows[torch.randperm(len(rows), generator=generator)]
        for start in range(0, len(rows), batch_size):
            yield self.gather(rows[start:start + batch_size])


def load_exams(
    source: Manifest | str | Path | Sequence[ExamRecord],
    tokenizer: ReportTokenizer,
    image_size: int = 64,
    max_tokens: int = 96,
    section: str = "findings",
    profile_features: Sequence[str] = ("hash", "age", "sex"),
    transform: Compose | None = None,
) -> ExamTensors:
    """Load exams into tensors; rows whose image cannot be read are skipped and listed."""
    if isinstance(source, (str, Path)):
        source = read_manifest(source)
    if isinstance(source, Manifest):
        records, skipped, origin = source.records, list(source.skipped), source.path
    else:
        records, skipped, origin = list(source), [], Path("<records>")
    load = transform or image_transform(image_size)
    image_of: dict[int, torch.Tensor] = {}
    for r in records:
        try:
            image = load(str(r.image_paths[0]))
            image_of[id(r)] = torch.as_tensor(getattr(image, "as_tensor", lambda: image)(), dtype=torch.float32)
        except Exception as e:  # any reader failure: corrupt file, wrong format, missing file
            skipped.append(SkippedRow(origin, r.line, f"unreadable image {r.image_paths[0]}: {type(e).__name__}: {e}"))
    if skipped:
        log.warning("%s: skipped %d row(s); first: %s", origin, len(skipped), skipped[0])
    # Visits are recomputed after the drops, so no patient sequence has a hole.
    kept = assign_visits([r for r in records if id(r) in image_of])
    key_to_row = {(r.site_id, r.patient_id, r.visit_index): j for j, r in enumerate(kept)}
    prior = torch.tensor([key_to_row.get((r.site_id, r.patient_id, r.visit_index - 1), -1) for r in kept],
                         dtype=torch.long)
    images = torch.stack([image_of[id(r)] for r in kept]) if kept else torch.zeros(0, 1, image_size, image_size)
    label_names = tuple(sorted({k for r in kept for k in r.labels}))
    labels = torch.tensor([[r.labels.get(k, -100) for k in label_names] for r in kept],
                          dtype=torch.long).reshape(len(kept), len(label_names))
    return ExamTensors(
        records=kept,
        images=images,
        input_ids=tokenizer.encode_batch([r.report(section) for r in kept], max_tokens),
        profiles=profile_vectors(kept, profile_features),
        visit_index=torch.tensor([r.visit_index for r in kept], dtype=torch.long),
        prior_index=prior,
        labels=labels,
        label_names=label_names,
        skipped=skipped,
    )


def concat_exams(parts: Sequence[ExamTensors]) -> ExamTensors:
    """Several sites' exams as one block (central training); prior links and batch rows follow."""
    offsets, total = [], 0
    for p in parts:
        offsets.append(total)
        total += len(p)
    prior = torch.cat([torch.where(p.prior_index >= 0, p.prior_index + o, p.prior_index)
                       for p, o in zip(parts, offsets)])
    rows = torch.cat([p.rows() + o for p, o in zip(parts, offsets)])
    return ExamTensors(
        records=[r for p in parts for r in p.records],
        images=torch.cat([p.images for p in parts]), input_ids=torch.cat([p.input_ids for p in parts]),
        profiles=torch.cat([p.profiles for p in parts]), visit_index=torch.cat([p.visit_index for p in parts]),
        prior_index=prior, skipped=[s for p in parts for s in p.skipped], batch_rows=rows,
        q=None if any(p.q is None for p in parts) else torch.cat([p.q for p in parts]),
        labels=torch.cat([p.labels for p in parts])
        if len({p.label_names for p in parts}) == 1 and parts[0].labels is not None else None,
        label_names=parts[0].label_names if len({p.label_names for p in parts}) == 1 else (),
    )
