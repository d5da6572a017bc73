"""Export the shared LoRA of the decoder in peft's adapter format.

`save_peft_adapter` writes ``adapter_config.json`` and
``adapter_model.safetensors`` exactly as ``PeftModel.save_pretrained`` would
for the decoder (a GPT-2-style causal LM with cross-attention), so tools
that speak peft can load the site-independent part of a FedTAR model with
``PeftModel.from_pretrained(decoder, folder)``. The patient path (hypernetwork
heads, projection) has no peft equivalent and stays in FedTAR's own files.
"""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig
from safetensors.torch import save_file
from transformers.pytorch_utils import Conv1D

from fedtar.generator.adapters import PatientLoRALinear
from fedtar.generator.model import ReportGenerator


def save_peft_adapter(model: ReportGenerator, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors, targets, conv1d = {}, [], []
    for name, module in model.decoder.named_modules():
        if isinstance(module, PatientLoRALinear) and module.lora_A is not None:
            targets.append(name)
            conv1d.append(isinstance(module.base, Conv1D))
            tensors[f"base_model.model.{name}.lora_A.weight"] = module.lora_A.weight.detach().cpu().contiguous()
            tensors[f"base_model.model.{name}.lora_B.weight"] = module.lora_B.weight.detach().cpu().contiguous()
    if not targets:
        raise ValueError("the decoder has no shared LoRA to export (lora.shared = false?)")
    lora = model.cfg.lora
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                        fan_in_fan_out=all(conv1d), task_type="CAUSAL_LM")
    config.save_pretrained(str(folder))
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder
