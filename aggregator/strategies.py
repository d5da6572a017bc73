"""Server strategies: FedTAR and the baselines, as Flower Strategy subclasses.

All share one plumbing (FederatedStrategy): the same messages, the same reply
guards, the same evaluation aggregation. They differ only in `aggregate`.

Aggregation streams, so server memory does not grow with the parsed states of every
site: a first pass reads each reply once for the guards (its checks and update norm;
the parsed tensors are dropped right away), then `aggregate` combines one record (a
visit) at a time across the accepted replies in node order, each reply's state parsed,
folded into a float64 running mean and dropped (`combine`). Only Flower's own reply
bytes stay in memory for the whole round. With `federation.robust` a record's K states
are held until its robust statistic is computed (aggregator/robust.py).

Flower's own FedAvg/FedAdam/FedYogi insist on exactly one ArrayRecord per
reply and know nothing of our guards, so the baselines are re-stated here in
a few lines each over the same flat tensor dicts (the formulas are Flower's
and the papers'); FedTAR's per-visit replies need its own aggregation anyway.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from aggregator.guards import GuardReport, Rejection, check_state, norm_outliers, update_norm
from aggregator.robust import ROBUST_MODES, RobustCombiner, make_combiner
from fedtar.config import FedTARConfig
from fedtar.data.demographics import GMM_RECORD
from fedtar.generator.parameters import TensorSpec, state_from_record
from fedtar.learning.temporal_policy import MetaInputs, PolicyLearner, time_features
from fedtar.trust.audit import content_digest
from fedtar.trust.privacy import PrivacyAccountant, add_noise

log = logging.getLogger(__name__)
State = dict[str, torch.Tensor]
ValidationGrad = Callable[[State], State]


@dataclass
class Accepted:
    """A reply that passed the guards: Flower's content (its states are parsed again when
    folded in, never kept) and its metrics."""

    content: RecordDict
    metrics: dict[str, float]


class FederatedStrategy(Strategy):
    """Messages, guards and evaluation shared by every strategy."""

    name = "base"
    control_records: tuple[str, ...] = ()

    def __init__(self, cfg: FedTARConfig, specs: list[TensorSpec], run_values: dict[str, Any]):
        self.cfg, self.specs = cfg, specs
        self.config_values = {**cfg.to_flat(), **run_values, "strategy": self.name}
        self.global_state: State = {}
        self.report = GuardReport()
        self.bytes_received = 0
        self.info: dict[str, Any] = {}
        self.site_metrics: dict[int, dict[str, float]] = {}
        self.site_train: dict[int, dict[str, float]] = {}  # this round's accepted train metrics, per node
        self.partitions: dict[int, int] = {}  # simulated nodes' partition-id (their "site" record), per node
        self.received: list[dict[str, Any]] = []  # digest of every reply, for the sites' audit logs
        self.privacy = PrivacyAccountant(cfg.privacy) if cfg.privacy.enabled else None
        self._means_this_round = 0
        self.robust_kept: dict[str, list[int]] = {}  # multikrum: the nodes averaged, per record
        self.gmm: State = {}  # demographics.gmm_scope = federated: the fitted GMM, sent with every message
        if self.privacy and (self.name == "scaffold" or (self.name == "fedtar" and cfg.meta.validation == "federated")):
            raise ValueError("privacy.clip > 0 (client-level DP) does not cover SCAFFOLD control variates or "
                             "federated meta-validation gradients: use another strategy or meta.validation = server")
        robust = cfg.federation.robust
        if robust not in ROBUST_MODES:
            raise ValueError(f"federation.robust must be one of {', '.join(ROBUST_MODES)}, got {robust!r}")
        if robust != "none":
            RobustCombiner(robust, cfg.federation.trim_beta, cfg.federation.krum_byzantine, cfg.federation.krum_keep)
            if self.privacy is not None and cfg.privacy.noise_multiplier > 0:
                raise ValueError(f"federation.robust = {robust} with DP noise: the noise (z C / m) is calibrated to "
                                 "a mean's sensitivity; a median, trimmed mean or Krum selection can move further "
                                 "when one site changes, so the reported epsilon would not hold")
            if self.name == "drfa":
                raise ValueError("federation.robust applies to mean-based strategies; DRFA's lambda-weighted mean "
                                 "is the method itself")

    # -- messages -------------------------------------------------------
    def _messages(self, server_round: int, arrays: ArrayRecord, grid: Grid, kind: str,
                  extra_config: dict | None = None) -> list[Message]:
        config = ConfigRecord({**self.config_values, "server-round": server_round, **(extra_config or {})})
        out = []
        for node_id in grid.get_node_ids():
            content = RecordDict({"global": arrays, "config": config, **self.extra_records()})
            if self.gmm:
                content[GMM_RECORD] = ArrayRecord(self.gmm)
            out.append(Message(content=content, dst_node_id=node_id, message_type=kind))
        return out

    def extra_records(self) -> dict[str, ArrayRecord]:
        return {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.global_state = state_from_record(arrays)
        return self._messages(server_round, arrays, grid, MessageType.TRAIN)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self._messages(server_round, arrays, grid, MessageType.EVALUATE, dict(config))

    # -- replies --------------------------------------------------------
    def combine(self, accepted: dict[int, Accepted], name: str, weights: dict[int, float]) -> tuple[State, int]:
        """Record `name` of the replies in `weights` (node order), one reply parsed at a time and
        dropped once folded in: the weighted mean, or `federation.robust`'s statistic. Returns it
        and the number of states combined."""
        f = self.cfg.federation
        combiner = make_combiner(f.robust, sum(weights.values()), f.trim_beta, f.krum_byzantine, f.krum_keep)
        for node, weight in weights.items():
            combiner.add(self.read(accepted[node].content, name), weight)
        out = combiner.result()
        if isinstance(combiner, RobustCombiner) and f.robust == "multikrum":
            nodes = list(weights)
            self.robust_kept[name] = [nodes[i] for i in combiner.kept]
        return out, combiner.count

    def model_mean(self, server_round: int, accepted: dict[int, Accepted], name: str,
                   weights: dict[int, float]) -> State:
        """`combine` of site model states; with DP on, plus N(0, (z C / m)^2) per coordinate."""
        mean, count = self.combine(accepted, name, weights)
        if self.privacy is None or self.cfg.privacy.noise_multiplier <= 0:
            return mean
        self._means_this_round += 1
        g = torch.Generator().manual_seed(
            (self.cfg.train.seed * 1_000_003 + server_round) * 1009 + self._means_this_round)
        std = self.cfg.privacy.noise_multiplier * self.cfg.privacy.clip / count
        return add_noise(mean, std, g)

    def _record_received(self, server_round: int, kind: str, replies: list[Message]) -> None:
        for reply in replies:
            if not reply.has_error():
                site = reply.content.metric_records.get("site")  # simulated nodes: their partition-id
                pid = dict(site).get("partition-id") if site is not None else None
                if isinstance(pid, (int, float)) and not isinstance(pid, bool):
                    self.partitions[reply.metadata.src_node_id] = int(pid)
                self.received.append({"round": server_round, "kind": kind, "node_id": reply.metadata.src_node_id,
                                      "digest": content_digest(reply.content)})

    def record_names(self, content: RecordDict) -> list[str]:
        """The array records a reply must carry for this strategy (overridden per strategy)."""
        return ["arrays"]

    def read(self, content: RecordDict, name: str) -> State:
        """One record of a reply as tensors (the one place replies are parsed)."""
        return state_from_record(content[name], self.cfg.federation.transport_dtype)

    def parse(self, content: RecordDict) -> dict[str, State]:
        """The states a reply carries, by record name."""
        return {name: self.read(content, name) for name in self.record_names(content)}

    def _screen(self, reply: Message) -> tuple[Accepted | None, float, str]:
        """First pass over one reply: (the reply, its update norm, "") or (None, 0, why not).
        Its parsed tensors are dropped on return."""
        if reply.has_error():
            return None, 0.0, f"error reply: {reply.error.reason}"
        try:
            content = reply.content
            self.bytes_received += sum(r.count_bytes() for r in content.array_records.values())
            states = self.parse(content)
            metrics = dict(content["metrics"])
        except (KeyError, TypeError, ValueError) as e:
            return None, 0.0, f"malformed reply: {type(e).__name__}: {e}"
        reason = next((f"{name}: {r}" for name, s in states.items() if (r := check_state(s, self.specs))), None)
        if reason:
            return None, 0.0, reason
        # Update norms compare model states with the global (control variates are not models).
        norm = max((update_norm(s, self.global_state) for name, s in states.items()
                    if name not in self.control_records), default=0.0)
        return Accepted(content, metrics), norm, ""

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        self.report, accepted, norms = GuardReport(), {}, {}
        replies = list(replies)
        self._record_received(server_round, MessageType.TRAIN, replies)
        self.bytes_received, self._means_this_round, self.robust_kept = 0, 0, {}
        for reply in replies:
            node = reply.metadata.src_node_id
            screened, norms[node], reason = self._screen(reply)
            if screened is None:
                norms.pop(node)
                self.report.rejected.append(Rejection(node, reason))
                continue
            accepted[node] = screened
        for node, reason in norm_outliers(norms, self.cfg.federation.norm_bound).items():
            self.report.rejected.append(Rejection(node, reason))
            accepted.pop(node)
        accepted = dict(sorted(accepted.items()))  # arrival order must not change float sums
        self.report.accepted = list(accepted)
        self.site_train = {node: dict(a.metrics) for node, a in accepted.items()}
        for r in self.report.rejected:
            log.warning("round %d: site %s left out: %s", server_round, r.node_id, r.reason)
        if len(accepted) < self.cfg.federation.min_sites:
            return None, MetricRecord({"valid-replies": len(accepted)})
        new_state = self.aggregate(server_round, accepted)
        self.global_state = new_state
        if self.robust_kept:
            self.info["robust-kept"] = {name: list(nodes) for name, nodes in self.robust_kept.items()}
        if self.privacy is not None:  # every connected site is asked each round
            self.privacy.step(sample_rate=1.0)
            self.info["epsilon"] = self.privacy.epsilon()
        n = sum(a.metrics.get("num-examples", 0.0) for a in accepted.values())
        loss = sum(a.metrics.get("train-loss", 0.0) * a.metrics.get("num-examples", 0.0)
                   for a in accepted.values()) / max(n, 1)
        return ArrayRecord(new_state), MetricRecord({"train-loss": loss, "num-examples": n,
                                                     "valid-replies": len(accepted)})

    def aggregate(self, server_round: int, accepted: dict[int, Accepted]) -> State:
        raise NotImplementedError

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Example-weighted means of the sites' metrics (NaN where a site has none)."""
        self.site_metrics = {}
        replies = list(replies)
        self._record_received(server_round, MessageType.EVALUATE, replies)
        for reply in replies:
            if reply.has_error():
                log.warning("evaluation: site %s failed: %s", reply.metadata.src_node_id, reply.error.reason)
                continue
            self.site_metrics[reply.metadata.src_node_id] = dict(reply.content["metrics"])
        if not self.site_metrics:
            return None
        return MetricRecord(mean_metrics(list(self.site_metrics.values())))

    def summary(self) -> None:
        log.info("strategy %s, min_sites=%d, round timeout %.0fs", self.name, self.cfg.federation.min_sites,
                 self.cfg.federation.round_timeout)

    # -- server state ---------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything a resumed run needs: the strategy's own state and the privacy spent."""
        return {"strategy": self.state_dict(), "privacy": self.privacy.state_dict() if self.privacy else None,
                "gmm": dict(self.gmm)}

    def restore(self, saved: dict[str, Any]) -> None:
        self.load_state_dict(saved["strategy"])
        self.gmm = dict(saved.get("gmm") or {})
        if self.privacy is not None and saved.get("privacy"):
            self.privacy.load_state_dict(saved["privacy"])


def mean_metrics(per_site: list[dict[str, float]]) -> dict[str, float]:
    """Weighted by each site's example count; per-visit (per-year) keys by that visit's (year's)
    count; NaN skipped."""
    keys = sorted({k for m in per_site for k in m})
    out = {}
    for key in keys:
        if key.startswith(("n-visit-", "n-year-")) or key in ("num-examples", "cmp_n"):
            out[key] = float(sum(m.get(key, 0.0) for m in per_site))
            continue
        group = next((g for g in ("visit", "year") if f"-{g}-" in key), None)
        weight_key = f"n-{group}-{key.rsplit(f'-{group}-', 1)[1]}" if group else "num-examples"
        if key == "cmp_acc":
            weight_key = "cmp_n"
        pairs = [(m[key], m.get(weight_key, 1.0)) for m in per_site if key in m and not math.isnan(m[key])]
        total = sum(w for _, w in pairs)
        out[key] = sum(v * w for v, w in pairs) / total if total > 0 else float("nan")
    return out


def _n(accepted: dict[int, Accepted]) -> dict[int, float]:
    """Each reply's sample count, the baselines' weights."""
    return {node: float(a.metrics.get("num-examples", 1.0)) for node, a in accepted.items()}


class FedAvg(FederatedStrategy):
    """McMahan et al. 2017: sample-weighted mean of the sites' states (all visits pooled)."""

    name = "fedavg"

    def aggregate(self, server_round, accepted):
        return self.model_mean(server_round, accepted, "arrays", _n(accepted))


class FedProx(FedAvg):
    """Li et al. 2020: FedAvg with a proximal term mu/2 ||w - w_g||^2 in the sites' loss."""

    name = "fedprox"


class LocalOnly(FederatedStrategy):
    """Each site trains alone; nothing is aggregated (sites keep their model in context.state)."""

    name = "local"

    def record_names(self, content):
        return []

    def aggregate(self, server_round, accepted):
        return self.global_state


class FedOpt(FederatedStrategy):
    """Reddi et al. 2021: a server optimizer on the pseudo-gradient mean(w_k) - w_g."""

    name = "fedadam"
    yogi = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.m: State = {}
        self.v: State = {}

    def aggregate(self, server_round, accepted):
        f = self.cfg.federation
        mean = self.model_mean(server_round, accepted, "arrays", _n(accepted))
        out = {}
        for k, w in self.global_state.items():
            delta = mean[k] - w
            m = f.beta1 * self.m.get(k, torch.zeros_like(w)) + (1 - f.beta1) * delta
            v_prev = self.v.get(k, torch.full_like(w, f.tau**2))
            if self.yogi:
                v = v_prev - (1 - f.beta2) * delta**2 * torch.sign(v_prev - delta**2)
            else:
                v = f.beta2 * v_prev + (1 - f.beta2) * delta**2
            self.m[k], self.v[k] = m, v
            out[k] = w + f.server_lr * m / (v.sqrt() + f.tau)
        return out

    def state_dict(self):
        return {"m": self.m, "v": self.v}

    def load_state_dict(self, state):
        self.m, self.v = dict(state["m"]), dict(state["v"])


class FedYogi(FedOpt):
    name = "fedyogi"
    yogi = True


class Scaffold(FedAvg):
    """Karimireddy et al. 2020 (option II control variates, global step size 1)."""

    name = "scaffold"
    control_records = ("scaffold-dc",)

    def __init__(self, *args, num_sites: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.c: State = {s.name: torch.zeros(s.shape, dtype=s.dtype) for s in self.specs}
        self.num_sites = num_sites

    def extra_records(self):
        return {"scaffold-c": ArrayRecord(self.c)}

    def record_names(self, content):
        return ["arrays", "scaffold-dc"]

    def aggregate(self, server_round, accepted):
        new = super().aggregate(server_round, accepted)
        mean_dc, count = self.combine(accepted, "scaffold-dc", {node: 1.0 for node in accepted})
        share = count / max(self.num_sites, count)
        self.c = {k: self.c[k] + share * mean_dc[k] for k in self.c}
        return new

    def state_dict(self):
        return {"c": self.c}

    def load_state_dict(self, state):
        self.c = dict(state["c"])


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection onto {x >= 0, sum x = 1} (Duchi et al. 2008)."""
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1
    k = torch.arange(1, len(v) + 1, dtype=v.dtype)
    rho = int(torch.nonzero(u - css / k > 0)[-1])
    return torch.clamp(v - css[rho] / (rho + 1), min=0)


class DRFA(FederatedStrategy):
    """Deng, Kamani and Mahdavi 2020, distributionally robust federated averaging, with every
    site taking part each round: the global is the lambda-weighted mean of the sites' states,
    then lambda takes a projected ascent step on the sites' losses, so sites the global serves
    worst weigh more. (The paper samples sites by lambda and estimates the losses at a random
    local iterate; here each site's mean local training loss of the round stands in for it.)"""

    name = "drfa"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weights: dict[int, float] = {}  # lambda per node id (uniform for sites not seen yet)

    def aggregate(self, server_round, accepted):
        nodes = list(accepted)
        lam = torch.tensor([self.weights.get(n, 1.0 / len(nodes)) for n in nodes], dtype=torch.float64)
        lam = lam / lam.sum()
        new = self.model_mean(server_round, accepted, "arrays", dict(zip(nodes, lam.tolist())))
        losses = torch.tensor([float(accepted[n].metrics.get("train-loss", 0.0)) for n in nodes],
                              dtype=torch.float64)
        lam = project_to_simplex(lam + self.cfg.federation.drfa_lr * losses)
        self.weights.update({n: float(w) for n, w in zip(nodes, lam)})
        self.info = {"drfa-lambda": {str(n): round(float(w), 4) for n, w in zip(nodes, lam)}}
        return new

    def state_dict(self):
        return {"weights": dict(self.weights)}

    def load_state_dict(self, state):
        self.weights = {int(k): float(v) for k, v in state["weights"].items()}


def _weighted_metric(accepted: dict, weights: dict[int, float], key: str) -> float:
    """A reported metric averaged over sites with the given weights (0 where a site lacks it)."""
    return sum(float(accepted[n].metrics.get(key, 0.0)) * w for n, w in weights.items()) \
        / max(sum(weights.values()), 1e-9)


class FedTAR(FederatedStrategy):
    """Per-visit means, temporal residual recursion, first-order meta-learned alpha."""

    name = "fedtar"

    def __init__(self, *args, validation_grad: ValidationGrad | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.learner = PolicyLearner(self.cfg.policy, seed=self.cfg.train.seed)
        self.validation_grad = validation_grad
        self.pending: MetaInputs | None = None  # last round's aggregation, awaiting federated gradients
        if self.cfg.meta.validation not in ("server", "federated"):
            raise ValueError(f"meta.validation must be server or federated, got {self.cfg.meta.validation!r}")

    # A reply's fused validation gradient is checked like the visit states, but it is no model.
    control_records = ("val-grad",)

    def record_names(self, content):
        return [name for name in content.array_records if name.startswith("visit-") or name == "val-grad"]

    def aggregate(self, server_round, accepted):
        self.info = {}
        # Federated meta step first: the gradients in these replies are at the previous round's w^T.
        if self.cfg.meta.validation == "federated" and self.pending is not None:
            with_grad = {n: float(a.metrics.get("val-examples", 1.0)) for n, a in accepted.items()
                         if "val-grad" in a.content.array_records}
            if with_grad:
                grad, _ = self.combine(accepted, "val-grad", with_grad)
                self.info["meta"] = self.learner.meta_step(self.pending, grad)
        visits = sorted({int(name.split("-")[1]) for a in accepted.values() for name in a.content.array_records
                         if name.startswith("visit-")})
        means, gaps, dates = [], [], []
        for t in visits:
            weights = {n: float(a.metrics.get(f"n-visit-{t}", 1.0)) for n, a in accepted.items()
                       if f"visit-{t}" in a.content.array_records}
            means.append(self.model_mean(server_round, accepted, f"visit-{t}", weights))
            gaps.append(_weighted_metric(accepted, weights, f"years-visit-{t}"))
            dates.append(_weighted_metric(accepted, weights, f"date-visit-{t}"))
        visits_t = torch.tensor(visits)
        features = time_features(self.cfg.policy.features, gaps, dates)
        inputs = MetaInputs(visits_t, features, dict(self.global_state), means)
        alpha = self.learner.alpha(visits_t, features)
        new = self.learner.aggregate(inputs)
        self.info.update({"alpha": [round(float(a), 4) for a in alpha], "visits": visits})
        if self.cfg.meta.validation == "server" and self.validation_grad is not None:
            self.info["meta"] = self.learner.meta_step(inputs, self.validation_grad)
        self.pending = inputs
        return new

    def state_dict(self):
        return {"policy": self.learner.state_dict(), "pending": self.pending}

    def load_state_dict(self, state):
        self.learner.load_state_dict(state["policy"])
        self.pending = state["pending"]


STRATEGIES: dict[str, type[FederatedStrategy]] = {
    cls.name: cls for cls in (FedTAR, FedAvg, FedProx, FedOpt, FedYogi, Scaffold, DRFA, LocalOnly)
}
