"""The paper's backbone shapes (CvT-21 at 384 px + DistilGPT2) with random weights, built offline.

Shared by the benchmarks: saves the two configs' random models to a folder and
builds the FedTAR model from those folders, the path real checkpoints take.
"""

from __future__ import annotations

from pathlib import Path

from transformers import CvtConfig, CvtModel, GPT2Config, GPT2LMHeadModel

from fedtar.config import load_config
from fedtar.model import ReportGenerator, build_model
from fedtar.tokenizer import ReportTokenizer

VOCAB = 50257  # DistilGPT2's


def paper_model(folder: str | Path, **overrides) -> tuple[ReportGenerator, ReportTokenizer]:
    folder = Path(folder)
    tok = ReportTokenizer.train([" ".join(f"w{i}" for i in range(VOCAB - 5))], vocab_size=VOCAB)
    CvtModel(CvtConfig(depth=[1, 4, 16], embed_dim=[64, 192, 384], num_heads=[1, 3, 6]),
             add_pooling_layer=False).save_pretrained(folder / "enc")
    GPT2LMHeadModel(GPT2Config(n_layer=6, n_embd=768, n_head=12, vocab_size=tok.vocab_size)
                    ).save_pretrained(folder / "dec")
    cfg = load_config(overrides={"model.encoder": str(folder / "enc"), "model.decoder": str(folder / "dec"),
                                 "model.image_channels": 3, "data.image_size": 384, **overrides})
    return build_model(cfg, tok), tok
