"""A 3D vision encoder for CT volumes: MONAI's ViT behind the Hugging Face encoder interface.

The report generator talks to encoders through ``encoder(pixel_values=...)
.last_hidden_state`` and saves them by their config; wrapping MONAI's ViT in a
PretrainedConfig/PreTrainedModel pair lets a CT model be saved, rebuilt offline
and adapted with LoRA (its attention ``qkv``/``out_proj`` and the visual
projection) like any other backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput


class VolumeViTConfig(PretrainedConfig):
    model_type = "fedtar-volume-vit"

    def __init__(self, num_channels: int = 3, volume_size: tuple[int, int, int] = (64, 64, 32),
                 patch_size: tuple[int, int, int] = (16, 16, 8), hidden_size: int = 128, num_hidden_layers: int = 2,
                 num_attention_heads: int = 4, intermediate_size: int = 512, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_channels, self.volume_size, self.patch_size = num_channels, list(volume_size), list(patch_size)
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size


@dataclass
class VolumeEncoderOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None


class VolumeViTEncoder(PreTrainedModel):
    config_class = VolumeViTConfig
    main_input_name = "pixel_values"

    def __init__(self, config: VolumeViTConfig) -> None:
        from monai.networks.nets import ViT  # here, not at import: this module registers the config with AutoModel

        super().__init__(config)
        self.vit = ViT(in_channels=config.num_channels, img_size=tuple(config.volume_size),
                       patch_size=tuple(config.patch_size), hidden_size=config.hidden_size,
                       mlp_dim=config.intermediate_size, num_layers=config.num_hidden_layers,
                       num_heads=config.num_attention_heads, classification=False, spatial_dims=3)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:  # MONAI initialises its own layers
        pass

    def forward(self, pixel_values: torch.Tensor, **_) -> VolumeEncoderOutput:
        tokens, _ = self.vit(pixel_values)
        return VolumeEncoderOutput(last_hidden_state=tokens)


def tiny_volume_config(image_size: int, depth: int, channels: int, hidden: int, layers: int, heads: int
                       ) -> VolumeViTConfig:
    """Patches of an eighth of the volume per side: 512 tokens at most, whatever the size."""
    patch = (max(image_size // 8, 1), max(image_size // 8, 1), max(depth // 4, 1))
    return VolumeViTConfig(num_channels=channels, volume_size=(image_size, image_size, depth), patch_size=patch,
                           hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=4 * hidden)


AutoConfig.register(VolumeViTConfig.model_type, VolumeViTConfig)
AutoModel.register(VolumeViTConfig, VolumeViTEncoder)
