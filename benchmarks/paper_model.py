"""The paper's backbone shapes (CvT-21 at 384 px + DistilGPT2) with random weights, built offline.

Shared by the benchmarks: saves the two configs' random models to a folder and
builds the FedTAR model from those folders, the path real checkpoints take.
``cross_attention=False`` saves the decoder as DistilGPT2 is published (no
cross-attention: those layers are new, so they train and travel); True saves
it with cross-attention weights, as in an encoder-decoder pretrained together
(the CvT2DistilGPT2 layout: they stay frozen at home).
"""

from __future__ import annotations

from pathlib import Path

from transformers import CvtConfig, CvtModel, GPT2Config, GPT2LMHeadModel

from fedtar.config import load_config
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import ReportGenerator, build_model

VOCAB = 50257  # DistilGPT2's


def paper_backbones(folder: str | Path, cross_attention: bool = False) -> ReportTokenizer:
    """Write the random encoder (folder/enc) and decoder (folder/dec); return a tokenizer of the decoder's size."""
    folder = Path(folder)
    tok = ReportTokenizer.train([" ".join(f"w{i}" for i in range(VOCAB - 5))], vocab_size=VOCAB)
    CvtModel(CvtConfig(depth=[1, 4, 16], embed_dim=[64, 192, 384], num_heads=[1, 3, 6]),
             add_pooling_layer=False).save_pretrained(folder / "enc")
    GPT2LMHeadModel(GPT2Config(n_layer=6, n_embd=768, n_head=12, vocab_size=tok.vocab_size,
                               add_cross_attention=cross_attention)).save_pretrained(folder / "dec")
    return tok


def paper_model_from(folder: str | Path, tok: ReportTokenizer, **overrides) -> ReportGenerator:
    """The FedTAR model on backbones written by paper_backbones (config overrides as dotted keys)."""
    folder = Path(folder)
    cfg = load_config(overrides={"model.encoder": str(folder / "enc"), "model.decoder": str(folder / "dec"),
                                 "model.image_channels": 3, "data.image_size": 384, **overrides})
    return build_model(cfg, tok)


def paper_model(folder: str | Path, cross_attention: bool = False,
                **overrides) -> tuple[ReportGenerator, ReportTokenizer]:
    tok = paper_backbones(folder, cross_attention)
    return paper_model_from(folder, tok, **overrides), tok
