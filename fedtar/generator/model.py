"""The report generator: vision encoder + causal decoder with cross-attention.

Longitudinal input (``model.prior``):
- ``image``: current and prior images are encoded by the same encoder; their
  tokens are marked current/prior by a learned type embedding and both feed
  the decoder's cross-attention (prior tokens masked for a first visit);
- ``report``: the prior report is a prefix of the decoder input, left-padded
  so that it always ends at position P0 and the new report starts at P0;
  the loss covers the new report only;
- ``both`` / ``none``.

Comparing the two images (issue 19; fedtar.generator.change_head): ``model.compare = difference`` adds
the token-wise difference (current - prior) to the memory, and ``model.change_head`` adds one
memory token per observation from a head that classifies the change against the prior exam,
supervised by ``model.change_loss``.

Patient-adaptive LoRA (fedtar.generator.adapters) wraps the encoder's and decoder's
projections; the patient embedding phi_p = W_proj q_p + b_proj is computed
here from the site's soft assignment q_p and handed to every layer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from torch import nn
from transformers import AutoConfig, PretrainedConfig

from fedtar.config import V1_GENERATOR, FedTARConfig, apply_overrides
from fedtar.data.exams import Batch
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.adapters import SHARED_HYPERNETWORK, PatientLoRALinear, inject_patient_lora, patient_context
from fedtar.generator.backbones import (
    TINY_ENCODERS,
    decoder_from_config,
    encoder_from_config,
    load_decoder,
    load_encoder,
    tiny_decoder_config,
    tiny_encoder_config,
)
from fedtar.generator.change_head import CHANGE_HEAD, ChangeHead, change_loss

PRIOR_CHOICES = ("none", "image", "report", "both")
COMPARE_CHOICES = ("none", "difference")
COMPARE_TYPE = "compare_type"  # the type embedding of difference tokens (trainable, travels)
MODEL_FILE, CONFIG_FILE, TRAINABLE_FILE = "model.safetensors", "fedtar_config.json", "trainable.json"
UNTRAINED_FILE = "untrained.json"  # tensors no checkpoint held and no pretraining trained: they must train
ENCODER_CONFIG, DECODER_CONFIG = "encoder_config.json", "decoder_config.json"


@dataclass
class DecoderInput:
    ids: torch.Tensor        # (B, k + L)
    mask: torch.Tensor       # (B, k + L)
    positions: torch.Tensor  # (B, k + L)
    prefix_len: int          # k


class ReportGenerator(nn.Module):
    def __init__(self, cfg: FedTARConfig, encoder: nn.Module, decoder: nn.Module, tokenizer: ReportTokenizer,
                 q_dim: int):
        super().__init__()
        if cfg.model.prior not in PRIOR_CHOICES:
            raise ValueError(f"model.prior must be one of {PRIOR_CHOICES}, got {cfg.model.prior!r}")
        self.cfg = cfg
        self.encoder, self.decoder = encoder, decoder
        enc_dim = _hidden_size(encoder.config)
        dec_dim = _hidden_size(decoder.config)
        self.visual_proj = nn.Linear(enc_dim, dec_dim)
        self.image_type = nn.Embedding(2, dec_dim)  # 0: current exam, 1: prior exam
        self.patient_proj = nn.Linear(q_dim, cfg.lora.hyper_dim) if cfg.lora.patient else None
        self.compare_type: nn.Parameter | None = None
        self.change_head: ChangeHead | None = None
        set_comparison(self, cfg)
        self.pad_id, self.bos_id, self.eos_id = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
        self.encoder_channels = getattr(encoder.config, "num_channels", 1)
        # Tensors the pretrained backbones lacked (GPT-2's cross-attention): they train and travel
        # until a pretraining trains them; kept with a saved base so adapt_model does not freeze them.
        self.untrained: list[str] = []

    @property
    def uses_prior_image(self) -> bool:
        return self.cfg.model.prior in ("image", "both")

    @property
    def uses_prior_report(self) -> bool:
        return self.cfg.model.prior in ("report", "both")

    @property
    def report_start(self) -> int:
        """Position of the new report's [BOS]: P0 after a prior report, else 0."""
        return self.cfg.data.max_tokens if self.uses_prior_report else 0

    def train(self, mode: bool = True) -> ReportGenerator:
        """As nn.Module.train, but a frozen base keeps its normalization statistics frozen too
        (BatchNorm running stats are buffers that would otherwise drift at each site)."""
        super().train(mode)
        if mode and self.cfg.train.base == "frozen":
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # -- encoding -------------------------------------------------------
    def patient_embedding(self, q: torch.Tensor | None) -> torch.Tensor | None:
        if self.patient_proj is None or q is None:
            return None
        return self.patient_proj(q)

    def _encode_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.encoder_channels:
            images = images.expand(-1, self.encoder_channels, *images.shape[2:])
        h = self.encoder(pixel_values=images).last_hidden_state
        if h.dim() == 4:  # convolutional encoders (CvT, ConvNeXt): (B, C, H, W) -> (B, HW, C)
            h = h.flatten(2).transpose(1, 2)
        h = self.visual_proj(h)
        # Cross-attention is order-blind: mark where each token sits (left vs right matters).
        return h + _sinusoid(h.shape[1], h.shape[2], h.device, h.dtype)

    def encode(self, batch: Batch, phi: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention memory (B, M, D) and its mask (B, M)."""
        memory, mask, _ = self._encode(batch, phi)
        return memory, mask

    def _encode(self, batch: Batch, phi: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Memory, its mask and the change head's logits (None without a change head)."""
        b = batch.images.shape[0]
        if not self.uses_prior_image:
            with patient_context(self, phi):
                cur = self._encode_images(batch.images) + self.image_type.weight[0]
            return cur, torch.ones(cur.shape[:2], device=cur.device, dtype=torch.long), None
        both = torch.cat([batch.images, batch.prior_images])
        with patient_context(self, None if phi is None else torch.cat([phi, phi])):
            tokens = self._encode_images(both)
        cur_tokens, prior_tokens = tokens[:b], tokens[b:]
        parts = [cur_tokens + self.image_type.weight[0], prior_tokens + self.image_type.weight[1]]
        prior_mask = batch.has_prior[:, None].long()
        masks = [torch.ones(parts[0].shape[:2], device=tokens.device, dtype=torch.long),
                 prior_mask.expand(-1, prior_tokens.shape[1])]
        if self.compare_type is not None:
            parts.append(cur_tokens - prior_tokens + self.compare_type)
            masks.append(prior_mask.expand(-1, prior_tokens.shape[1]))
        logits = None
        if self.change_head is not None:
            teacher = batch.change if self.training and self.cfg.model.change_teacher else None
            logits, change_tokens = self.change_head(cur_tokens, prior_tokens, teacher)
            parts.append(change_tokens)
            masks.append(prior_mask.expand(-1, change_tokens.shape[1]))
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1), logits

    # -- decoder inputs ---------------------------------------------------
    def _prefix(self, batch: Batch) -> torch.Tensor:
        """The prior reports, left-padded and trimmed to the batch's longest."""
        b = batch.prior_ids.shape[0]
        if not self.uses_prior_report:
            return batch.prior_ids.new_zeros((b, 0))
        real = batch.prior_ids != self.pad_id
        order = torch.argsort(real.int(), dim=1, stable=True)  # pads first, tokens keep their order
        left = torch.gather(batch.prior_ids, 1, order)
        k = int(real.sum(1).max()) if b else 0
        return left[:, left.shape[1] - k:]

    def decoder_input(self, prefix: torch.Tensor, ids: torch.Tensor) -> DecoderInput:
        k = prefix.shape[1]
        full = torch.cat([prefix, ids], dim=1)
        mask = (full != self.pad_id).long()
        mask[:, k:k + 1] = 1  # BOS/first token is always attended (pad ids may coincide)
        start = self.report_start
        positions = torch.cat([torch.arange(start - k, start), torch.arange(start, start + ids.shape[1])])
        return DecoderInput(full, mask, positions.to(ids.device).expand(ids.shape[0], -1), k)

    # -- training -------------------------------------------------------
    def report_logits(self, batch: Batch, q: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits over the current report (B, L-1, V) and their targets (B, L-1)."""
        pred, target, _ = self._report_logits(batch, q)
        return pred, target

    def _report_logits(self, batch: Batch, q: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        phi = self.patient_embedding(q)
        memory, memory_mask, change_logits = self._encode(batch, phi)
        length = int((batch.input_ids != self.pad_id).sum(1).max())
        ids = batch.input_ids[:, :length]
        inp = self.decoder_input(self._prefix(batch), ids)
        with patient_context(self, phi):
            logits = self.decoder(input_ids=inp.ids, attention_mask=inp.mask, position_ids=inp.positions,
                                  encoder_hidden_states=memory, encoder_attention_mask=memory_mask,
                                  use_cache=False).logits
        k = inp.prefix_len
        return logits[:, k:k + length - 1], ids[:, 1:], change_logits

    def _report_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.masked_fill(target == self.pad_id, -100)
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), target.reshape(-1), ignore_index=-100)

    def forward(self, batch: Batch, q: torch.Tensor | None = None) -> torch.Tensor:
        """Mean token cross-entropy of the current report (the loss every table reports)."""
        pred, target = self.report_logits(batch, q)
        return self._report_loss(pred, target)

    def objective(self, batch: Batch, q: torch.Tensor | None = None) -> torch.Tensor:
        """What training minimises: the report loss plus `model.change_loss` times the change head's
        loss (just the report loss without a change head or with weight 0)."""
        pred, target, change_logits = self._report_logits(batch, q)
        loss = self._report_loss(pred, target)
        weight = self.cfg.model.change_loss
        if change_logits is not None and weight > 0:
            loss = loss + weight * change_loss(change_logits, batch.change)
        return loss

    @torch.no_grad()
    def predict_change(self, batch: Batch, q: torch.Tensor | None = None) -> torch.Tensor:
        """The change head's class per (exam, observation), indices into CHANGE_TARGETS."""
        if self.change_head is None:
            raise ValueError("this model has no change head (model.change_head = false)")
        return self._encode(batch, self.patient_embedding(q))[2].argmax(-1)

    # -- generation -----------------------------------------------------
    @torch.no_grad()
    def generate(self, batch: Batch, q: torch.Tensor | None = None, max_new_tokens: int | None = None,
                 num_beams: int = 1, length_penalty: float = 1.0) -> list[list[int]]:
        """Greedy (num_beams=1) or beam search with a KV cache; returns token ids without [BOS]."""
        max_new_tokens = max_new_tokens or self.cfg.data.max_tokens - 1
        w = num_beams
        phi = self.patient_embedding(q)
        memory, memory_mask = self.encode(batch, phi)
        b = memory.shape[0]
        rep = lambda t: None if t is None else t.repeat_interleave(w, dim=0)  # noqa: E731
        memory, memory_mask, phi = rep(memory), rep(memory_mask), rep(phi)
        prefix = rep(self._prefix(batch))
        bos = torch.full((b * w, 1), self.bos_id, dtype=torch.long, device=memory.device)
        inp = self.decoder_input(prefix, bos)
        scores = torch.zeros(b, w, device=memory.device)
        scores[:, 1:] = float("-inf")  # all beams start identical: keep one
        seqs = bos.new_zeros((b * w, 0))
        finished = torch.zeros(b * w, dtype=torch.bool, device=memory.device)
        lengths = torch.zeros(b * w, device=memory.device)
        step_ids, mask, positions, cache = inp.ids, inp.mask, inp.positions, None
        with patient_context(self, phi):
            for step in range(max_new_tokens):
                out = self.decoder(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                                   encoder_hidden_states=memory, encoder_attention_mask=memory_mask,
                                   cache=cache, use_cache=True)
                cache = out.cache
                logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)
                # A finished beam only extends with [PAD] at no cost.
                logp = torch.where(finished[:, None], torch.full_like(logp, float("-inf")), logp)
                logp[:, self.pad_id] = torch.where(finished, 0.0, float("-inf"))
                vocab = logp.shape[-1]
                cand = (scores.view(-1, 1) + logp).view(b, w * vocab)
                top_scores, top_idx = cand.topk(w, dim=1)
                source = (torch.arange(b, device=memory.device)[:, None] * w + top_idx // vocab).view(-1)
                token = (top_idx % vocab).view(-1)
                seqs = torch.cat([seqs[source], token[:, None]], dim=1)
                lengths = lengths[source] + (~finished[source]).float()
                finished = finished[source] | (token == self.eos_id)
                scores = top_scores
                if w > 1:
                    cache.reorder_cache(source)
                if bool(finished.all()):
                    break
                step_ids = token[:, None]
                mask = torch.cat([mask[source], torch.ones_like(step_ids)], dim=1)
                positions = positions[:, -1:] + 1
        normalized = (scores.view(-1) / lengths.clamp(min=1) ** length_penalty).view(b, w)
        best = (torch.arange(b, device=memory.device) * w + normalized.argmax(1))
        result = []
        for row in seqs[best].tolist():
            row = [t for t in row if t != self.pad_id]
            result.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return result


def set_comparison(model: ReportGenerator, cfg: FedTARConfig) -> None:
    """Give the model the comparison modules cfg asks for (new ones untrained), drop the others."""
    m = cfg.model
    if m.compare not in COMPARE_CHOICES:
        raise ValueError(f"model.compare must be one of {COMPARE_CHOICES}, got {m.compare!r}")
    if (m.compare != "none" or m.change_head) and m.prior not in ("image", "both"):
        raise ValueError(f"model.compare = {m.compare!r} and model.change_head = {m.change_head} compare the prior "
                         f"image with the current one: they need model.prior = image or both, got {m.prior!r}; for "
                         f"model.prior = {m.prior} also set model.change_head = false, model.change_loss = 0, "
                         "model.change_teacher = false and model.compare = none (the v1 generator)")
    dim = model.visual_proj.out_features
    if m.compare == "difference":
        if model.compare_type is None:
            model.compare_type = nn.Parameter(torch.zeros(dim))
    else:
        model.compare_type = None
    if m.change_head:
        if model.change_head is None or model.change_head.classify.in_features != m.change_width:
            model.change_head = ChangeHead(dim, m.change_width)
    else:
        model.change_head = None


def _sinusoid(n: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table.to(dtype)


def _config_from_json(path: Path) -> PretrainedConfig:
    values = json.loads(path.read_text())
    return AutoConfig.for_model(values.pop("model_type"), **values)


def _hidden_size(config: PretrainedConfig) -> int:
    for attr in ("hidden_size", "n_embd", "d_model"):
        if isinstance(getattr(config, attr, None), int):
            return getattr(config, attr)
    for attr in ("embed_dim", "hidden_sizes"):  # CvT, ConvNeXt, ResNet: one width per stage
        widths = getattr(config, attr, None)
        if isinstance(widths, (list, tuple)):
            return int(widths[-1])
    raise ValueError(f"cannot tell the hidden size of {type(config).__name__}")


def q_dim(cfg: FedTARConfig) -> int:
    """Width of what feeds the patient projection: q_p (GMM), or v_p, or both side by side."""
    d = cfg.demographics
    if not d.gmm:
        return len(d.features)
    return d.gmm_components + (len(d.features) if d.with_profile else 0)


def build_model(cfg: FedTARConfig, tokenizer: ReportTokenizer) -> ReportGenerator:
    """A model from the config: tiny random backbones or pretrained ones, then LoRA, then freezing."""
    m = cfg.model
    new_params: list[str] = []
    if m.encoder in TINY_ENCODERS:
        encoder = encoder_from_config(tiny_encoder_config(cfg.data.image_size, m.image_channels, m.hidden_size,
                                                          m.layers, m.heads, m.patch_size, m.encoder,
                                                          cfg.data.volume_depth))
    else:
        enc = load_encoder(m.encoder)
        encoder, new_params = enc.module, new_params + [f"encoder.{n}" for n in enc.new_parameters]
    if m.decoder == "tiny":
        decoder = decoder_from_config(tiny_decoder_config(
            tokenizer.vocab_size, m.hidden_size, m.layers, m.heads, 2 * cfg.data.max_tokens + 8,
            tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id))
    else:
        dec = load_decoder(m.decoder)
        decoder, new_params = dec.module, new_params + [f"decoder.{n}" for n in dec.new_parameters]
        if decoder.get_input_embeddings().num_embeddings == tokenizer.vocab_size - 1 and \
                tokenizer.pad_id == tokenizer.vocab_size - 1:
            decoder.resize_token_embeddings(tokenizer.vocab_size)  # the [PAD] row from_pretrained added
        if decoder.get_input_embeddings().num_embeddings != tokenizer.vocab_size:
            raise ValueError(f"decoder {m.decoder} has {decoder.get_input_embeddings().num_embeddings} token "
                             f"embeddings but the tokenizer has {tokenizer.vocab_size}: use the decoder's own "
                             "tokenizer (ReportTokenizer.from_pretrained on its folder)")
    model = ReportGenerator(cfg, encoder, decoder, tokenizer, q_dim(cfg))
    model.untrained = new_params
    finalize_trainable(model, cfg, new_params)
    return model


def finalize_trainable(model: ReportGenerator, cfg: FedTARConfig, new_params: list[str] = ()) -> None:
    """Wrap targeted layers with LoRA and set which tensors train (and so travel)."""
    if cfg.lora.shared or cfg.lora.patient:
        inject_patient_lora(model, cfg.lora)
    if cfg.train.base not in ("frozen", "trainable"):
        raise ValueError(f"train.base must be frozen or trainable, got {cfg.train.base!r}")
    adapter_markers = ("lora_A", "lora_B", "hyper_A", "hyper_B", "patient_proj", SHARED_HYPERNETWORK, CHANGE_HEAD,
                       COMPARE_TYPE)
    new = {n.replace(".weight", "").replace(".bias", "") for n in new_params}
    for name, p in model.named_parameters():
        is_adapter = any(marker in name.split(".") for marker in adapter_markers)
        is_new = any(name.replace(".base.", ".").startswith(n) for n in new)
        p.requires_grad_(cfg.train.base == "trainable" or is_adapter or is_new)


ARCHITECTURE_KEYS = ("model.encoder", "model.decoder", "model.hidden_size", "model.layers", "model.heads",
                     "model.patch_size", "model.image_channels", "data.image_size", "data.max_tokens",
                     "data.volume_depth")
# The comparison modules a base is pretrained with (a base's cache key names them; adapt_model adds
# or drops them, so a base pretrained without them still adapts, with them untrained).
COMPARISON_KEYS = ("model.compare", "model.change_head", "model.change_loss", "model.change_width",
                   "model.change_teacher")


def base_architecture(base_dir: str | Path | None) -> dict[str, Any]:
    """The architecture keys a saved base was built with, to lay under a run's own settings: a
    command that names a base takes its size from it unless a file or --set says otherwise
    ({} when there is no base yet, e.g. one `fedtar simulate` will pretrain)."""
    if not base_dir or not (Path(base_dir) / CONFIG_FILE).is_file():
        return {}
    flat = saved_config(base_dir)
    return {k: flat[k] for k in ARCHITECTURE_KEYS if k in flat}


def saved_config(folder: str | Path) -> dict[str, Any]:
    """The flat FedTAR config a model folder was saved with (save_model's CONFIG_FILE)."""
    path = Path(folder) / CONFIG_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the model's config: {e}") from e


def adapt_model(base: ReportGenerator, cfg: FedTARConfig) -> ReportGenerator:
    """Turn a saved base (no adapters) into a model for patient-adaptive fine-tuning under cfg."""
    if any(isinstance(m, PatientLoRALinear) for m in base.modules()):
        raise ValueError("adapt_model expects a base without adapters (a `fedtar pretrain` output)")
    old, new = base.cfg.to_flat(), cfg.to_flat()
    clash = [k for k in ARCHITECTURE_KEYS if old[k] != new[k]]
    if clash:
        raise ValueError("config differs from the base's architecture in " +
                         ", ".join(f"{k} (base {old[k]!r}, config {new[k]!r})" for k in clash))
    base.cfg = cfg
    base.patient_proj = nn.Linear(q_dim(cfg), cfg.lora.hyper_dim) if cfg.lora.patient else None
    set_comparison(base, cfg)
    finalize_trainable(base, cfg, base.untrained)
    return base


# -- save / load ------------------------------------------------------------
def save_model(folder: str | Path, model: ReportGenerator, tokenizer: ReportTokenizer) -> Path:
    """Everything needed to rebuild the model offline: configs, tokenizer, all weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(model.cfg.to_flat(), indent=2, sort_keys=True))
    model.encoder.config.to_json_file(folder / ENCODER_CONFIG)
    model.decoder.config.to_json_file(folder / DECODER_CONFIG)
    tokenizer.save(folder)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    (folder / TRAINABLE_FILE).write_text(json.dumps(trainable, indent=1))
    (folder / UNTRAINED_FILE).write_text(json.dumps(model.untrained, indent=1))
    save_safetensors(model, str(folder / MODEL_FILE))  # handles tied embeddings
    return folder


def load_model(folder: str | Path, overrides: dict | None = None) -> tuple[ReportGenerator, ReportTokenizer]:
    """Rebuild from the saved configs (no hub access) and load the weights."""
    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{folder}: no {MODEL_FILE}: not a saved FedTAR model")
    saved = saved_config(folder)
    saved.setdefault("lora.hypernetwork", "per-layer")  # models saved before the key had per-layer heads
    for key, value in V1_GENERATOR.items():  # and no comparison modules
        saved.setdefault(key, value)
    cfg = apply_overrides(FedTARConfig(), saved)
    cfg = apply_overrides(cfg, overrides or {})
    tokenizer = ReportTokenizer.load(folder)
    enc_cfg, dec_cfg = (_config_from_json(folder / f) for f in (ENCODER_CONFIG, DECODER_CONFIG))
    model = ReportGenerator(cfg, encoder_from_config(enc_cfg), decoder_from_config(dec_cfg), tokenizer, q_dim(cfg))
    finalize_trainable(model, cfg)
    if (folder / UNTRAINED_FILE).is_file():
        model.untrained = json.loads((folder / UNTRAINED_FILE).read_text())
    trainable = set(json.loads((folder / TRAINABLE_FILE).read_text()))
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    missing, unexpected = load_safetensors(model, str(folder / MODEL_FILE), strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match the model: missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    return model, tokenizer
