"""One site's data as the method sees it: exams (images streamed) plus the site-local assigner.

The same loader serves a simulated site, a hospital node and the central
baseline, so they all see identical tensors for identical manifests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from data_adapters.records import ExamRecord, Manifest, read_manifest
from fedtar.config import FedTARConfig
from fedtar.data.demographics import DiagonalGMM, PatientAssigner
from fedtar.data.exams import ENCODE_CHUNK, Exams, load_exams
from fedtar.data.image_store import image_reader
from fedtar.data.tokenizer import ReportTokenizer, UnknownRate, unknown_rate

log = logging.getLogger(__name__)


@dataclass
class SiteData:
    name: str
    exams: Exams
    assigner: PatientAssigner   # q_p from the site's own GMM (or the federated one it was sent): never leaves
    unknown: UnknownRate        # [UNK] share of the site's report tokens under the base's tokenizer

    def split(self, name: str, visit: int | None = None) -> Exams:
        return self.exams.where(split=name, visit=visit)

    def validation(self, recent_fraction: float = 1.0) -> Exams:
        """The validation split the meta step uses; with `recent_fraction` < 1 only its most
        recent exams by study date (the period a deployed model reports next)."""
        exams = self.split("validate")
        rows = exams.rows().tolist()
        if recent_fraction >= 1.0 or not rows:
            return exams
        dates = sorted(exams.records[i].study_date for i in rows)
        cut = dates[min(len(dates) - 1, int(len(dates) * (1.0 - recent_fraction)))]
        exams.batch_rows = torch.tensor([i for i in rows if exams.records[i].study_date >= cut], dtype=torch.long)
        return exams

    def use_gmm(self, gmm: DiagonalGMM) -> None:
        """Take a GMM fitted elsewhere (demographics.gmm_scope = federated) in place of the site's own.
        Every message carries it: q is recomputed only when it differs from the one in use."""
        current = self.assigner.gmm
        if current is not None and all(torch.equal(a, b) for a, b in zip(current.state_dict().values(),
                                                                          gmm.state_dict().values())):
            return
        self.assigner = PatientAssigner(gmm, self.assigner.with_profile)
        self.exams.q = self.assigner(self.exams.profiles)

    def training_profiles(self) -> torch.Tensor:
        return training_profiles(self.exams)

    @property
    def visits(self) -> list[int]:
        return sorted({r.visit_index for r in self.exams.records})


def training_profiles(exams: Exams) -> torch.Tensor:
    """The profiles a GMM is fitted on: the training patients' (all, where the site has none)."""
    train = exams.where(split="train")
    return train.profiles[train.rows()] if train.num_examples() else exams.profiles


def load_site(source: str | Path | Manifest | list[ExamRecord], tokenizer: ReportTokenizer,
              cfg: FedTARConfig, name: str | None = None) -> SiteData:
    """Load a manifest and fit the site's own GMM on its training patients' profiles (a federated
    GMM, when the run uses one, replaces it with the first message: SiteData.use_gmm)."""
    manifest = read_manifest(source) if isinstance(source, (str, Path)) else source
    d = cfg.data
    exams = load_exams(manifest, tokenizer, d.image_size, d.max_tokens, d.section, cfg.demographics.features,
                       image_reader(d.image_size, d.volume_depth, d.hu_windows, d.voxel_spacing),
                       cache_mib=d.cache_mib, workers=d.workers)
    if not len(exams):
        where = getattr(manifest, "path", "<records>")
        raise ValueError(f"{where}: no usable exams ({len(exams.skipped)} rows skipped)")
    dm = cfg.demographics
    assigner = PatientAssigner.fit(training_profiles(exams), dm.gmm, dm.gmm_components, seed=cfg.train.seed,
                                   with_profile=dm.with_profile, select=dm.gmm_select)
    exams.q = assigner(exams.profiles)
    site_name = name or (exams.records[0].site_id if exams.records else "site")
    return SiteData(site_name, exams, assigner, report_unknown_rate(site_name, exams.records, tokenizer, cfg))


def report_unknown_rate(name: str, records: list[ExamRecord], tokenizer: ReportTokenizer,
                        cfg: FedTARConfig) -> UnknownRate:
    """Log the tokenizer's unknown-token rate on these reports; warn above data.max_unknown_rate.

    A base whose vocabulary was trained on other text (the synthetic pool) turns a real site's
    targets into [UNK]s and every metric is then measured on them.
    """
    texts = [r.report(cfg.data.section) for r in records]
    parts = [unknown_rate(tokenizer, texts[i:i + ENCODE_CHUNK]) for i in range(0, len(texts), ENCODE_CHUNK)]
    rate = UnknownRate(sum(p.unknown for p in parts), sum(p.tokens for p in parts))
    if rate.rate > cfg.data.max_unknown_rate:
        log.warning("%s: the base's tokenizer does not know %s of the report tokens (threshold %.2f%%): "
                    "build a base for this text (fedtar pretrain --data, or a pretrained decoder; docs: "
                    "guides/mimic-cxr.md)", name, rate, 100 * cfg.data.max_unknown_rate)
    else:
        log.info("%s: unknown-token rate %s", name, rate)
    return rate
