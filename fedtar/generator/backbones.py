"""Vision encoders and causal text decoders: small random ones or pretrained ones.

``model.encoder`` / ``model.decoder`` = "tiny" builds a small randomly
initialised ViT / GPT-2 from the sizes in ModelConfig (tests, the demo).
Anything else is passed to ``from_pretrained``: a hub id (needs the network
once, or a filled HF cache) or a local folder, e.g. the paper's backbone::

    model.encoder = "microsoft/cvt-21-384-22k"   # or /models/cvt-21-384-22k
    model.decoder = "distilgpt2"                 # or /models/distilgpt2

Set ``HF_HUB_OFFLINE=1`` on machines without network so nothing is fetched.
The decoder gets cross-attention layers (``add_cross_attention``); weights a
checkpoint lacks (those layers, for GPT-2) are reported back so the caller
can train them instead of freezing random weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    ConvNextConfig,
    ConvNextModel,
    GPT2Config,
    GPT2LMHeadModel,
    PretrainedConfig,
    ResNetConfig,
    ResNetModel,
    ViTConfig,
    ViTModel,
)

from fedtar.generator.volume_encoder import tiny_volume_config  # also registers the 3D encoder with AutoModel

log = logging.getLogger(__name__)


@dataclass
class Backbone:
    module: nn.Module
    config: PretrainedConfig
    new_parameters: list[str] = field(default_factory=list)  # not in the checkpoint: must train


TINY_ENCODERS = ("tiny", "tiny-resnet", "tiny-convnext", "tiny-vit", "tiny-3d")


def tiny_encoder_config(image_size: int, channels: int, hidden: int, layers: int, heads: int,
                        patch: int, kind: str = "tiny-vit", depth: int = 0) -> PretrainedConfig:
    """A small encoder config.

    "tiny"/"tiny-resnet": a 3-stage ResNet. Its BatchNorm lets it learn findings from a few
    hundred steps on a few thousand images, where ViT and ConvNeXt (LayerNorm) stayed at the
    majority class in our measurements; it has no Linear layers, so LoRA adapts the visual
    projection rather than the encoder. "tiny-convnext" (LoRA on its 1x1 Linear layers) and
    "tiny-vit" are there for comparison. "tiny-3d": MONAI's ViT on (C, size, size, depth) CT volumes.
    """
    if kind == "tiny-3d":
        if depth <= 0:
            raise ValueError('model.encoder = "tiny-3d" needs data.volume_depth > 0 (CT volumes)')
        return tiny_volume_config(image_size, depth, channels, hidden, layers, heads)
    if kind in ("tiny", "tiny-resnet"):
        widths = [max(hidden // 4, 8), max(hidden // 2, 8), hidden]
        return ResNetConfig(num_channels=channels, embedding_size=widths[0], hidden_sizes=widths,
                            depths=[1, max(layers - 1, 1), 1], layer_type="basic", downsample_in_first_stage=False)
    if kind == "tiny-convnext":
        widths = [max(hidden // 4, 8), max(hidden // 2, 8), hidden]
        return ConvNextConfig(num_channels=channels, patch_size=4, num_stages=3, hidden_sizes=widths,
                              depths=[1, max(layers - 1, 1), 1], image_size=image_size, layer_scale_init_value=1.0)
    return ViTConfig(image_size=image_size, patch_size=patch, num_channels=channels, hidden_size=hidden,
                     num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=4 * hidden)


def tiny_decoder_config(vocab_size: int, hidden: int, layers: int, heads: int, positions: int,
                        bos: int, eos: int, pad: int) -> GPT2Config:
    return GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=positions,
                      add_cross_attention=True, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)


def encoder_from_config(config: PretrainedConfig) -> nn.Module:
    if isinstance(config, ViTConfig):
        return ViTModel(config, add_pooling_layer=False)
    if isinstance(config, ConvNextConfig):
        return ConvNextModel(config)
    if isinstance(config, ResNetConfig):
        return ResNetModel(config)
    return AutoModel.from_config(config)


def decoder_from_config(config: PretrainedConfig) -> nn.Module:
    config.add_cross_attention = True
    if isinstance(config, GPT2Config):
        return GPT2LMHeadModel(config)
    return AutoModelForCausalLM.from_config(config)


def load_encoder(name_or_path: str) -> Backbone:
    module, info = AutoModel.from_pretrained(name_or_path, output_loading_info=True)
    if isinstance(module, ViTModel) and module.pooler is not None:
        module.pooler = None  # unused (the decoder reads every token), and a rebuilt base has none
    return Backbone(module, module.config, list(info.get("missing_keys", [])))


def load_decoder(name_or_path: str) -> Backbone:
    config = AutoConfig.from_pretrained(name_or_path)
    config.add_cross_attention = True
    config.is_decoder = True
    module, info = AutoModelForCausalLM.from_pretrained(name_or_path, config=config, output_loading_info=True)
    missing = list(info.get("missing_keys", []))
    if missing:
        log.info("decoder %s: %d tensors not in the checkpoint (trained, and they travel)", name_or_path,
                 len(missing))
    return Backbone(module, module.config, missing)
