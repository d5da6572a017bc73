"""Patient profile vectors and the site-local Gaussian mixture over them.

v_p = [norm(hash(patient_id)), norm(age), enc(sex)] (DESIGN.md section 2);
q_p is the soft assignment of v_p under a diagonal GMM fit on the site's own
patients. The GMM's statistics are site state: they never travel.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Rows per step of the GMM's E-step: bounds its (rows, K, F) float64 temporaries (about 3 MB at K=16, F=3).
GMM_CHUNK = 8192
SEX_CODE = {"M": -1.0, "F": 1.0, "O": 0.0, "U": 0.0}
AGE_CENTER, AGE_SCALE = 60.0, 20.0


def _patient_hash(patient_id: str) -> float:
    digest = hashlib.sha256(patient_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 2 - 1  # [-1, 1)


def profile_vectors(records: Sequence, features: Sequence[str] = ("hash", "age", "sex")) -> torch.Tensor:
    """(N, len(features)) float tensor. Extra numeric features come from record.extras."""
    rows = []
    for r in records:
        row = []
        for f in features:
            if f == "hash":
                row.append(_patient_hash(r.patient_id))
            elif f == "age":
                row.append((r.age - AGE_CENTER) / AGE_SCALE)
            elif f == "sex":
                row.append(SEX_CODE[r.sex])
            else:
                value = r.extras.get(f, 0.0)
                row.append(float(value) if isinstance(value, (int, float)) else 0.0)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(features))


@dataclass
class DiagonalGMM:
    """A diagonal-covariance Gaussian mixture fitted by EM (deterministic given the seed)."""

    means: torch.Tensor      # (K, F)
    variances: torch.Tensor  # (K, F)
    log_weights: torch.Tensor  # (K,)

    @classmethod
    def fit(cls, x: torch.Tensor, components: int = 16, iterations: int = 100, seed: int = 0,
            min_variance: float = 1e-3) -> DiagonalGMM:
        x = x.double()
        n = x.shape[0]
        k = components  # fixed: the projection W_proj expects q of this width
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(n, generator=g)[:k] if n >= k else torch.randint(0, n, (k,), generator=g)
        means = x[pick].clone()
        variances = x.var(0, unbiased=False).clamp(min=min_variance).expand(k, -1).clone()
        log_w = torch.full((k,), -math.log(k), dtype=torch.float64)
        gmm = cls(means, variances, log_w)
        for _ in range(iterations):
            # Sufficient statistics summed over row chunks: the (rows, K, F) temporaries stay
            # bounded at any cohort size (one chunk, the same arithmetic, below GMM_CHUNK rows).
            nk, sx, sxx = torch.zeros(k, dtype=x.dtype), torch.zeros_like(means), torch.zeros_like(means)
            for part in x.split(GMM_CHUNK):
                resp = gmm.responsibilities(part)       # (rows, K)
                nk += resp.sum(0)
                sx += resp.T @ part
                sxx += resp.T @ (part * part)
            nk += 1e-10
            means = sx / nk[:, None]
            variances = (sxx / nk[:, None] - means**2).clamp(min=min_variance)
            gmm = cls(means, variances, (nk / n).log())
        return cls(gmm.means.float(), gmm.variances.float(), gmm.log_weights.float())

    def _log_joint(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.means.dtype)
        diff = x[:, None, :] - self.means[None]
        log_pdf = -0.5 * ((diff**2 / self.variances).sum(-1) + self.variances.log().sum(-1)
                          + x.shape[1] * math.log(2 * math.pi))
        return log_pdf + self.log_weights

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """q_p: the soft assignment of each row, (N, K), rows summing to 1 (GMM_CHUNK rows at a time)."""
        if len(x) <= GMM_CHUNK:
            return torch.softmax(self._log_joint(x), dim=-1)
        return torch.cat([torch.softmax(self._log_joint(part), dim=-1) for part in x.split(GMM_CHUNK)])

    def log_likelihood(self, x: torch.Tensor) -> float:
        return float(torch.logsumexp(self._log_joint(x), -1).mean())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"means": self.means, "variances": self.variances, "log_weights": self.log_weights}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> DiagonalGMM:
        return cls(state["means"], state["variances"], state["log_weights"])


@dataclass
class PatientAssigner:
    """Site-local map from profile vectors to q_p: GMM responsibilities, or the profile itself.

    Fitted on the site's own patients and kept at the site (never sent).
    """

    gmm: DiagonalGMM | None
    with_profile: bool = False  # q_p and v_p side by side (demographics.with_profile)

    @classmethod
    def fit(cls, profiles: torch.Tensor, use_gmm: bool = True, components: int = 16, seed: int = 0,
            with_profile: bool = False) -> PatientAssigner:
        return cls(DiagonalGMM.fit(profiles, components, seed=seed) if use_gmm else None, with_profile)

    def __call__(self, profiles: torch.Tensor) -> torch.Tensor:
        if self.gmm is None:
            return profiles.float()
        q = self.gmm.responsibilities(profiles.cpu()).to(profiles.device)
        return torch.cat([q, profiles.float()], dim=-1) if self.with_profile else q
