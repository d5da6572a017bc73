"""Patient profile vectors and the Gaussian mixture over them.

v_p = [norm(hash(patient_id)), norm(age), enc(sex)] (DESIGN.md section 2);
q_p is the soft assignment of v_p under a diagonal GMM. By default each site
fits it on its own patients and it never travels; with
demographics.gmm_scope = federated the sites send per-component sums over
their patients instead (the end of this module) and receive one GMM fitted
from them (aggregator/federated_gmm.py).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Rows per step of the GMM's E-step: bounds its (rows, K, F) float64 temporaries (about 3 MB at K=16, F=3).
GMM_CHUNK = 8192
# EM stops once the mean log-likelihood gains less than this, where many fits are compared (BIC).
BIC_TOLERANCE = 1e-5
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
class Moments:
    """Count, sum and sum of squares of profile rows: all a federated fit learns before its first E-step."""

    n: float
    sum: torch.Tensor     # (F,)
    sum_sq: torch.Tensor  # (F,)

    @classmethod
    def of(cls, x: torch.Tensor) -> Moments:
        x = x.double()
        return cls(float(x.shape[0]), x.sum(0), (x * x).sum(0))


@dataclass
class EMStatistics:
    """The sufficient statistics of one E-step: per component the responsibility-weighted count, sum
    and sum of squares of the rows, and the rows' total log-likelihood. They add up across holders."""

    counts: torch.Tensor          # (K,)
    sums: torch.Tensor            # (K, F)
    sums_sq: torch.Tensor         # (K, F)
    log_likelihood: torch.Tensor  # ()

    def __add__(self, other: EMStatistics) -> EMStatistics:
        return EMStatistics(self.counts + other.counts, self.sums + other.sums, self.sums_sq + other.sums_sq,
                            self.log_likelihood + other.log_likelihood)


@dataclass
class DiagonalGMM:
    """A diagonal-covariance Gaussian mixture fitted by EM (deterministic given the seed)."""

    means: torch.Tensor      # (K, F)
    variances: torch.Tensor  # (K, F)
    log_weights: torch.Tensor  # (K,)

    @classmethod
    def fit(cls, x: torch.Tensor, components: int = 16, iterations: int = 100, seed: int = 0,
            min_variance: float = 1e-3, tolerance: float = 0.0) -> DiagonalGMM:
        """EM for `iterations` steps, or until the mean log-likelihood gains less than `tolerance`."""
        x = x.double()
        n = x.shape[0]
        k = components  # fixed: the projection W_proj expects q of this width
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(n, generator=g)[:k] if n >= k else torch.randint(0, n, (k,), generator=g)
        means = x[pick].clone()
        variances = x.var(0, unbiased=False).clamp(min=min_variance).expand(k, -1).clone()
        log_w = torch.full((k,), -math.log(k), dtype=torch.float64)
        gmm = cls(means, variances, log_w)
        last = -math.inf
        for _ in range(iterations):
            stats = gmm.statistics(x)
            gmm = cls.from_statistics(stats, min_variance)
            now = stats.log_likelihood.item() / max(n, 1)
            if now - last < tolerance:
                break
            last = now
        return gmm.to(torch.float32)

    @classmethod
    def start(cls, moments: Moments, components: int, seed: int = 0, min_variance: float = 1e-3) -> DiagonalGMM:
        """A starting point from the data's moments alone (no row is seen): means drawn around the mean
        with the data's spread, every variance the data's, equal weights. A federated fit starts here."""
        mean = moments.sum / max(moments.n, 1.0)
        var = (moments.sum_sq / max(moments.n, 1.0) - mean**2).clamp(min=min_variance)
        g = torch.Generator().manual_seed(seed)
        means = mean + var.sqrt() * torch.randn(components, mean.shape[0], generator=g, dtype=torch.float64)
        return cls(means, var.expand(components, -1).clone(),
                   torch.full((components,), -math.log(components), dtype=torch.float64))

    def statistics(self, x: torch.Tensor) -> EMStatistics:
        """The E-step's sums over rows of x (GMM_CHUNK rows at a time, so the (rows, K, F) temporaries stay
        bounded at any cohort size). Sums from several holders of rows add up to the sums over all rows."""
        gmm = self.to(torch.float64)
        k, f = self.means.shape
        out = EMStatistics(torch.zeros(k, dtype=torch.float64), torch.zeros(k, f, dtype=torch.float64),
                           torch.zeros(k, f, dtype=torch.float64), torch.zeros((), dtype=torch.float64))
        for part in x.double().split(GMM_CHUNK):
            log_joint = gmm._log_joint(part)
            log_total = torch.logsumexp(log_joint, -1, keepdim=True)
            resp = (log_joint - log_total).exp()          # (rows, K)
            out.counts += resp.sum(0)
            out.sums += resp.T @ part
            out.sums_sq += resp.T @ (part * part)
            out.log_likelihood += log_total.sum()
        return out

    @classmethod
    def from_statistics(cls, stats: EMStatistics, min_variance: float = 1e-3) -> DiagonalGMM:
        """The M-step."""
        nk = stats.counts + 1e-10
        means = stats.sums / nk[:, None]
        variances = (stats.sums_sq / nk[:, None] - means**2).clamp(min=min_variance)
        return cls(means, variances, (nk / nk.sum()).log())

    def to(self, dtype: torch.dtype) -> DiagonalGMM:
        return DiagonalGMM(self.means.to(dtype), self.variances.to(dtype), self.log_weights.to(dtype))

    def bic(self, log_likelihood: float, n: float) -> float:
        """Bayesian information criterion of this fit on n rows (lower is better): each component has
        a mean and a variance per feature, and all but one a free weight."""
        k, f = self.means.shape
        return -2.0 * log_likelihood + (2 * k * f + k - 1) * math.log(max(n, 1.0))

    def padded(self, components: int) -> DiagonalGMM:
        """The same mixture with `components` slots (q's width): the extra ones have zero weight."""
        k, f = self.means.shape
        if k >= components:
            return self
        extra = components - k
        return DiagonalGMM(torch.cat([self.means, self.means[:1].expand(extra, f)]),
                           torch.cat([self.variances, self.variances[:1].expand(extra, f)]),
                           torch.cat([self.log_weights, torch.full((extra,), -math.inf, dtype=self.log_weights.dtype)]))

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


def bic_candidates(components: int) -> list[int]:
    """The component counts BIC chooses among: 1 to `components` (q keeps `components` slots)."""
    return list(range(1, components + 1))


@dataclass
class PatientAssigner:
    """A site's map from profile vectors to q_p: GMM responsibilities, or the profile itself.

    Fitted on the site's own patients and kept at the site (never sent), unless the site is handed a
    federated GMM (SiteData.use_gmm).
    """

    gmm: DiagonalGMM | None
    with_profile: bool = False  # q_p and v_p side by side (demographics.with_profile)

    @classmethod
    def fit(cls, profiles: torch.Tensor, use_gmm: bool = True, components: int = 16, seed: int = 0,
            with_profile: bool = False, select: str = "fixed", iterations: int = 100) -> PatientAssigner:
        """select = "bic": the number of components (of `bic_candidates(components)`) with the lowest BIC
        on these profiles, padded to `components` slots; "fixed": all `components`."""
        if not use_gmm:
            return cls(None, with_profile)
        if select == "fixed":
            return cls(DiagonalGMM.fit(profiles, components, iterations, seed=seed), with_profile)
        fits = [DiagonalGMM.fit(profiles, k, iterations, seed=seed, tolerance=BIC_TOLERANCE)
                for k in bic_candidates(components)]
        n = float(profiles.shape[0])
        best = min(fits, key=lambda g: g.bic(g.statistics(profiles).log_likelihood.item(), n))
        return cls(best.padded(components), with_profile)

    def __call__(self, profiles: torch.Tensor) -> torch.Tensor:
        if self.gmm is None:
            return profiles.float()
        q = self.gmm.responsibilities(profiles.cpu()).to(profiles.device)
        return torch.cat([q, profiles.float()], dim=-1) if self.with_profile else q


# -- federated EM: what travels (demographics.gmm_scope = federated) ------------
# Server to site: candidate mixtures, "<K>.means" / "<K>.variances" / "<K>.log_weights" for each
# component count K. Site to server: per candidate, "<K>.counts" / "<K>.sums" / "<K>.sums_sq" /
# "<K>.log_likelihood" (sums over the site's training profiles), or with no candidates its Moments
# ("n", "sum", "sum_sq"). Sums over patients only: no row, id or profile of a patient travels.
GMM_RECORD, GMM_CANDIDATES, GMM_STATISTICS = "gmm", "gmm-candidates", "gmm-statistics"  # message record names


def candidates_to_state(gmms: dict[int, DiagonalGMM]) -> dict[str, torch.Tensor]:
    return {f"{k}.{name}": v.double() for k, g in gmms.items() for name, v in g.state_dict().items()}


def candidates_from_state(state: dict[str, torch.Tensor]) -> dict[int, DiagonalGMM]:
    ks = sorted({int(name.split(".", 1)[0]) for name in state})
    return {k: DiagonalGMM(state[f"{k}.means"].double(), state[f"{k}.variances"].double(),
                           state[f"{k}.log_weights"].double()) for k in ks}


def site_statistics(profiles: torch.Tensor, candidates: dict[int, DiagonalGMM]) -> dict[str, torch.Tensor]:
    """A site's answer to one step of federated EM."""
    if not candidates:
        m = Moments.of(profiles)
        return {"n": torch.tensor(m.n, dtype=torch.float64), "sum": m.sum, "sum_sq": m.sum_sq}
    out = {}
    for k, gmm in candidates.items():
        st = gmm.statistics(profiles)
        out.update({f"{k}.counts": st.counts, f"{k}.sums": st.sums, f"{k}.sums_sq": st.sums_sq,
                    f"{k}.log_likelihood": st.log_likelihood})
    return out


def moments_from_state(state: dict[str, torch.Tensor]) -> Moments:
    return Moments(float(state["n"]), state["sum"].double(), state["sum_sq"].double())


def statistics_from_state(state: dict[str, torch.Tensor], k: int) -> EMStatistics:
    return EMStatistics(state[f"{k}.counts"].double(), state[f"{k}.sums"].double(),
                        state[f"{k}.sums_sq"].double(), state[f"{k}.log_likelihood"].double())
