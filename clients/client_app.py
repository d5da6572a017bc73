"""The FedTAR Flower ClientApp: one app for a simulated site and a hospital node.

Messages in (from the server): "global" (ArrayRecord of the travelling
tensors) and "config" (ConfigRecord: the run's flat config, the strategy and
paths), plus strategy extras ("scaffold-c").

Messages out, train: FedTAR sends one ArrayRecord per visit ("visit-<t>")
and a MetricRecord with per-visit counts, losses, mean gaps and mean study
dates (fractional years, shifted where the site shifts dates); baselines
send "arrays" and "metrics". Both report the seconds of the handler and of the
model's passes in it ("site-seconds", "compute-seconds"). With meta.validation = federated the reply also
carries "val-grad" (the gradient of the site's validation loss at the global
it received: fused into the train message, so the meta step lags one round
but costs no extra round trip). Evaluate replies carry a MetricRecord only.
A simulated node (no manifest in its node config) adds "site", a MetricRecord
with the partition-id the engine gave it, so tables name sites as the data does.
With demographics.gmm_scope = federated, query messages carry candidate GMMs ("gmm-candidates")
and the reply "gmm-statistics": per component, sums over the site's training patients' profiles
(fedtar.data.demographics); every later message carries the fitted GMM ("gmm").
Nothing else leaves the site: no text, ids, or any patient's demographics.

A hospital node's policy (node config: ``pins``, ``base-sha256``) is enforced before the
site's data or model is touched, and every received state must match the node's own
travelling set (``clients.node_policy``); a refusal is written to the audit log.
"""

from __future__ import annotations

import logging
import time

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.node_policy import NodeRefusal, gmm_breaches, pin_breaches, state_breaches
from clients.site_runtime import (
    SiteRuntime,
    evaluate_site,
    resolve_manifest,
    site_runtime,
    site_validation_gradient,
    train_per_visit,
    train_pooled,
)
from fedtar.data.demographics import (
    GMM_CANDIDATES,
    GMM_RECORD,
    GMM_STATISTICS,
    DiagonalGMM,
    candidates_from_state,
    site_statistics,
)
from fedtar.generator.parameters import encode_state, state_from_record, travelling_specs
from fedtar.trust.audit import append_entry
from fedtar.trust.base_hash import base_sha256
from fedtar.trust.privacy import clip_upload

log = logging.getLogger(__name__)
LOCAL_STATE_KEY, SCAFFOLD_KEY = "local-model", "scaffold-ci"
SITE_RECORD = "site"  # simulated nodes only: {"partition-id": i}, for the server's per-site names
# Keys of the config record that are not FedTAR config keys.
RUN_KEYS = ("strategy", "base-dir", "data-root", "data-sites", "server-round", "split")

app = ClientApp()


def _runtime(msg: Message, context: Context) -> tuple[SiteRuntime, ConfigRecord]:
    """The site's runtime, once the node's policy accepts the run and the received states."""
    config = msg.content["config"]
    cfg_flat = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k not in RUN_KEYS}
    node = dict(context.node_config)
    base_dir = node.get("base-dir", config.get("base-dir"))
    problems = pin_breaches(str(node.get("pins", "")), cfg_flat, str(config.get("strategy", "")))
    wanted = str(node.get("base-sha256", "")).strip().lower()
    if wanted and not problems and (found := base_sha256(base_dir)) != wanted:
        problems.append(f"base {base_dir} has sha256 {found}, the node vetted {wanted}")
    if problems:
        _refuse(msg, context, problems)
    manifest = resolve_manifest(node, config.get("data-root"), config.get("data-sites", ""))
    index = int(node.get("partition-id", 0))
    rt = site_runtime(cfg_flat, base_dir, manifest, index)
    specs = travelling_specs(rt.model)
    dm = rt.cfg.demographics
    features = len(dm.features)
    gmm = None  # demographics.gmm_scope = federated: the fitted GMM every message carries
    for name, record in msg.content.array_records.items():  # the global, control variates, the GMM
        state = state_from_record(record)
        if name in (GMM_RECORD, GMM_CANDIDATES):
            problems += gmm_breaches(state, name, features, dm.gmm_components if name == GMM_RECORD else None)
            gmm = state if name == GMM_RECORD else gmm
        else:
            problems += state_breaches(state, specs, name)
    if problems:
        _refuse(msg, context, problems)
    if gmm is not None:
        rt.site.use_gmm(DiagonalGMM.from_state_dict(gmm))
    return rt, config


def _refuse(msg: Message, context: Context, problems: list[str]) -> None:
    """Write the refusal to the audit log, then fail the message (the server sees the reason)."""
    reason = "; ".join(problems)
    audit_log = dict(context.node_config).get("audit-log")
    if audit_log:
        append_entry(str(audit_log), RecordDict(), run_id=context.run_id, node_id=context.node_id,
                     kind=f"refused-{msg.metadata.message_type}", round=int(msg.content["config"]["server-round"]),
                     reason=reason)
    log.error("node refuses the %s message: %s", msg.metadata.message_type, reason)
    raise NodeRefusal(f"node refuses: {reason}")


class EmptySite(ValueError):
    """A site with no training rows: its reply is an error the server leaves out, never an update."""


@app.train()
def train(msg: Message, context: Context) -> Message:
    started = time.perf_counter()
    rt, config = _runtime(msg, context)
    strategy, server_round = str(config["strategy"]), int(config["server-round"])
    if not rt.site.split("train").num_examples():
        raise EmptySite(f"site {rt.site.name} has no exams in its train split (all its rows are in other "
                        "splits or were skipped): nothing to train, no update sent")
    global_state = state_from_record(msg.content["global"])
    content = RecordDict()
    metrics: dict[str, float] = {}
    if rt.cfg.meta.validation == "federated" and strategy == "fedtar":
        grad, n_val = site_validation_gradient(rt, global_state)
        content["val-grad"] = ArrayRecord(grad)
        metrics["val-examples"] = float(n_val)
    if strategy == "fedtar":
        updates = train_per_visit(rt, global_state, server_round)
        if rt.cfg.privacy.enabled:  # the whole upload (all visits) within the clip bound
            clipped, norm = clip_upload([u.state for u in updates], global_state, rt.cfg.privacy.clip)
            _log_clip(norm, rt.cfg.privacy.clip)
            for u, state in zip(updates, clipped):
                u.state = state
        for u in updates:
            content[f"visit-{u.visit}"] = ArrayRecord(u.state)
            metrics[f"n-visit-{u.visit}"] = float(u.examples)
            metrics[f"loss-visit-{u.visit}"] = u.loss
            metrics[f"years-visit-{u.visit}"] = u.mean_years_since_prior
            metrics[f"date-visit-{u.visit}"] = u.mean_study_year
        metrics["num-examples"] = float(sum(u.examples for u in updates))
        metrics["compute-seconds"] = sum(u.compute_seconds for u in updates)
        metrics["train-loss"] = sum(u.loss * u.examples for u in updates) / max(metrics["num-examples"], 1)
    else:
        start, correction, ci = global_state, None, None
        if strategy == "local" and LOCAL_STATE_KEY in context.state:
            start = state_from_record(context.state[LOCAL_STATE_KEY])  # the site's own model, never sent
        if strategy == "fedprox":
            correction = _prox(global_state, rt.cfg.federation.prox_mu)
        if strategy == "scaffold":
            c = state_from_record(msg.content["scaffold-c"])
            ci = state_from_record(context.state[SCAFFOLD_KEY]) if SCAFFOLD_KEY in context.state else \
                {k: torch.zeros_like(v) for k, v in c.items()}
            correction = _scaffold(c, ci)
        state, n, stats = train_pooled(rt, start, server_round, correction)
        if rt.cfg.privacy.enabled and strategy != "local":
            (state,), norm = clip_upload([state], global_state, rt.cfg.privacy.clip)
            _log_clip(norm, rt.cfg.privacy.clip)
        if strategy == "local":
            context.state[LOCAL_STATE_KEY] = ArrayRecord(state)
        else:
            content["arrays"] = ArrayRecord(state)
        if strategy == "scaffold":
            # Option II of SCAFFOLD: c_i+ = c_i - c + (x - y) / (K lr).
            scale = 1.0 / (max(stats.steps, 1) * rt.cfg.train.lr)
            new_ci = {k: ci[k] - c[k] + (global_state[k] - state[k]) * scale for k in c}
            content["scaffold-dc"] = ArrayRecord({k: new_ci[k] - ci[k] for k in c})
            context.state[SCAFFOLD_KEY] = ArrayRecord(new_ci)
        metrics.update({"num-examples": float(n), "train-loss": stats.loss, "compute-seconds": stats.compute_seconds})
    # The handler's time so far (the site's runtime, the received state, training, the upload's tensors):
    # with compute-seconds, how much of a round the model's passes take (the server's round log).
    metrics["site-seconds"] = time.perf_counter() - started
    content["metrics"] = MetricRecord(metrics)
    return _reply(msg, content, context)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """One step of federated EM (demographics.gmm_scope = federated): the site's sums over its training
    patients' profiles under each candidate GMM, or their moments when no candidate is sent."""
    rt, _ = _runtime(msg, context)
    record = msg.content.array_records.get(GMM_CANDIDATES)
    candidates = candidates_from_state(state_from_record(record)) if record is not None else {}
    stats = site_statistics(rt.site.training_profiles(), candidates)
    return _reply(msg, RecordDict({GMM_STATISTICS: ArrayRecord(stats)}), context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    rt, config = _runtime(msg, context)
    state = state_from_record(msg.content["global"])
    if str(config["strategy"]) == "local" and LOCAL_STATE_KEY in context.state:
        state = state_from_record(context.state[LOCAL_STATE_KEY])
    metrics = evaluate_site(rt, state, split=str(config.get("split", "test")))
    return _reply(msg, RecordDict({"metrics": MetricRecord(metrics)}), context)


def _log_clip(norm: float, clip: float) -> None:
    # Site-local only: the unclipped norm is not covered by the DP guarantee, so it never travels.
    log.info("update norm %.4g clipped to %.4g", norm, min(norm, clip))


def _reply(msg: Message, content: RecordDict, context: Context) -> Message:
    """Every reply is written to the site's audit log (node config "audit-log") before it leaves."""
    transport = str(msg.content["config"].get("federation.transport_dtype", "float32"))
    for name, record in list(content.array_records.items()) if transport != "float32" else ():
        if name != GMM_STATISTICS:  # EM's sums stay in float64: they are small and rounding would bias them
            content[name] = ArrayRecord(encode_state(state_from_record(record), transport))
    node = dict(context.node_config)
    if "manifest" not in node and "partition-id" in node:
        # A simulated site says which partition the engine gave it (a number), so the server can name
        # the site as its data does; a hospital node (its manifest in node config) sends nothing of the kind.
        content[SITE_RECORD] = MetricRecord({"partition-id": int(node["partition-id"])})
    audit_log = node.get("audit-log")
    if audit_log:
        append_entry(str(audit_log), content, run_id=context.run_id, node_id=context.node_id,
                     kind=msg.metadata.message_type, round=int(msg.content["config"]["server-round"]))
    return Message(content=content, reply_to=msg)


def _prox(reference: dict[str, torch.Tensor], mu: float):
    def correct(params: dict[str, torch.nn.Parameter]) -> None:
        for name, p in params.items():
            if p.grad is not None:
                p.grad.add_(p.detach() - reference[name].to(p.device), alpha=mu)
    return correct


def _scaffold(c: dict[str, torch.Tensor], ci: dict[str, torch.Tensor]):
    def correct(params: dict[str, torch.nn.Parameter]) -> None:
        for name, p in params.items():
            if p.grad is not None:
                p.grad.add_((c[name] - ci[name]).to(p.device))
    return correct
