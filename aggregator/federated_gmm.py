"""One GMM for all sites, fitted by federated EM before round 1 (demographics.gmm_scope = federated).

DESIGN.md fits q_p's GMM at each site on its own patients, so the same component means different
patients at different sites while the hypernetwork that reads q_p is shared. Here every site
assigns its patients to the same components. Each EM step is one query message per site: the
server sends the candidate mixtures, each site answers with per-component sums over its training
patients' profiles (fedtar.data.demographics.site_statistics), and the server's M-step divides the summed
sums. The first query asks only for the sites' count, sum and sum of squares, which place the start.
With demographics.gmm_select = bic every component count 1..gmm_components is fitted at once (the
same messages carry them all) and the count with the lowest BIC on the summed log-likelihoods wins.

What the server learns is per-component sums over each site's patients. A component that holds one
patient at a site tells the server that patient's profile: run it with profiles a site may share
in aggregate (docs: explanation/privacy.md).

Every query has federation.round_timeout as its deadline and federation.round_retries retries; a step
with fewer than federation.min_sites valid answers stops the run before round 1, saying why.
"""

from __future__ import annotations

import logging
import math

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedtar.config import FedTARConfig
from fedtar.data.demographics import (
    BIC_TOLERANCE,
    GMM_CANDIDATES,
    GMM_STATISTICS,
    DiagonalGMM,
    EMStatistics,
    Moments,
    bic_candidates,
    candidates_to_state,
    moments_from_state,
    statistics_from_state,
)
from fedtar.generator.parameters import state_from_record

log = logging.getLogger(__name__)
EM_STEPS = 100  # as a site-local fit (DiagonalGMM.fit); EM stops earlier once it converges


class FederatedGMMError(RuntimeError):
    """Too few sites answered a step of federated EM."""


def fit_federated_gmm(grid: Grid, nodes: list[int], cfg: FedTARConfig, config: dict) -> DiagonalGMM:
    """Federated EM over the sites in `nodes`; `config` is the run's config record (the sites load
    their data from it, as for a train message)."""
    dm = cfg.demographics
    ks = bic_candidates(dm.gmm_components) if dm.gmm_select == "bic" else [dm.gmm_components]
    features = len(dm.features)
    moments = _sum_moments(_ask(grid, nodes, cfg, config, {}), features)
    if moments.n <= 0:  # no site answered well, or none holds a training patient
        raise FederatedGMMError("federated GMM: the sites hold no training patients")
    gmms = {k: DiagonalGMM.start(moments, k, seed=cfg.train.seed) for k in ks}
    last = dict.fromkeys(ks, -math.inf)
    active, steps = list(ks), 0
    while active and steps < EM_STEPS:
        steps += 1
        stats = _sum_statistics(_ask(grid, nodes, cfg, config, {k: gmms[k] for k in active}), active, features,
                                cfg.federation.min_sites)
        converged = []
        for k in active:
            now = stats[k].log_likelihood.item() / moments.n
            if now - last[k] < BIC_TOLERANCE:
                converged.append(k)
            last[k] = now
            gmms[k] = DiagonalGMM.from_statistics(stats[k])
        active = [k for k in active if k not in converged]
    stats = _sum_statistics(_ask(grid, nodes, cfg, config, gmms), ks, features, cfg.federation.min_sites)
    scores = {k: gmms[k].bic(stats[k].log_likelihood.item(), moments.n) for k in ks}
    best = min(ks, key=lambda k: scores[k])
    log.info("federated GMM: %d components over %.0f training profiles from %d sites (EM steps %d%s)",
             best, moments.n, len(nodes), steps,
             ", BIC " + " ".join(f"{k}:{scores[k]:.0f}" for k in ks) if len(ks) > 1 else "")
    return gmms[best].padded(dm.gmm_components).to(torch.float32)


def _ask(grid: Grid, nodes: list[int], cfg: FedTARConfig, config: dict,
         candidates: dict[int, DiagonalGMM]) -> list[dict[str, torch.Tensor]]:
    """One query to every site, with retries; the valid answers (at least federation.min_sites)."""
    fed = cfg.federation
    answers: list[dict[str, torch.Tensor]] = []
    for attempt in range(fed.round_retries + 1):
        messages = []
        for node in nodes:
            content = RecordDict({"config": ConfigRecord({**config, "server-round": 0})})
            if candidates:
                content[GMM_CANDIDATES] = ArrayRecord(candidates_to_state(candidates))
            messages.append(Message(content=content, dst_node_id=node, message_type=MessageType.QUERY))
        answers = []
        for reply in grid.send_and_receive(messages, timeout=fed.round_timeout):
            if reply.has_error():
                log.warning("federated GMM: node %s answered with an error: %s", reply.metadata.src_node_id,
                            reply.error.reason)
                continue
            if GMM_STATISTICS not in reply.content.array_records:
                log.warning("federated GMM: node %s sent no %s", reply.metadata.src_node_id, GMM_STATISTICS)
                continue
            answers.append(state_from_record(reply.content[GMM_STATISTICS]))
        if len(answers) >= fed.min_sites:
            return answers
        log.warning("federated GMM: %d answers < min_sites=%d (attempt %d of %d)", len(answers), fed.min_sites,
                    attempt + 1, fed.round_retries + 1)
    raise FederatedGMMError(f"federated GMM: {len(answers)} valid answers < min_sites={fed.min_sites} after "
                            f"{fed.round_retries + 1} attempt(s)")


def _finite(tensors: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _sum_moments(answers: list[dict[str, torch.Tensor]], features: int) -> Moments:
    total = Moments(0.0, torch.zeros(features, dtype=torch.float64), torch.zeros(features, dtype=torch.float64))
    for a in answers:
        try:
            m = moments_from_state(a)
        except KeyError as e:
            log.warning("federated GMM: an answer lacks %s: left out", e)
            continue
        if m.sum.shape != (features,) or m.sum_sq.shape != (features,) or m.n < 0 or not _finite([m.sum, m.sum_sq]):
            log.warning("federated GMM: an answer's moments are malformed or not finite: left out")
            continue
        total = Moments(total.n + m.n, total.sum + m.sum, total.sum_sq + m.sum_sq)
    return total


def _sum_statistics(answers: list[dict[str, torch.Tensor]], ks: list[int], features: int,
                    min_sites: int) -> dict[int, EMStatistics]:
    out: dict[int, EMStatistics] = {}
    valid = 0
    for a in answers:
        try:
            parts = {k: statistics_from_state(a, k) for k in ks}
        except KeyError as e:
            log.warning("federated GMM: an answer lacks %s: left out", e)
            continue
        ok = all(p.counts.shape == (k,) and p.sums.shape == (k, features) and p.sums_sq.shape == (k, features)
                 and bool((p.counts >= 0).all()) and _finite([p.counts, p.sums, p.sums_sq, p.log_likelihood])
                 for k, p in parts.items())
        if not ok:
            log.warning("federated GMM: an answer's statistics are malformed or not finite: left out")
            continue
        valid += 1
        for k, p in parts.items():
            out[k] = out[k] + p if k in out else p
    if valid < min_sites:
        raise FederatedGMMError(f"federated GMM: {valid} well-formed answers < min_sites={min_sites}")
    return out
