"""Optional CheXbert labels for clinical efficacy, from a weights file the user supplies.

Many published tables label reports with CheXbert (Smit et al., 2020) through
the `f1chexbert` package. That package downloads its weights by default; we
never do: the user passes the path of a local `chexbert.pth`, and the BERT
tokenizer/config must already be in the local Hugging Face cache (we run it
with HF_HUB_OFFLINE=1). `pip install f1chexbert` (not a dependency of ours).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_adapters.findings import CHEXPERT_OBSERVATIONS

# f1chexbert's class order and its label codes (0 blank, 1 positive, 2 negative, 3 uncertain).
_CHEXBERT_ORDER = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                   "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                   "Pleural Other", "Fracture", "Support Devices", "No Finding")
_CODE_TO_LABEL = {0: 0, 1: 1, 2: 0, 3: -1}


def chexbert_labeler(weights: str | Path):
    """A labeler (reports -> (N, 14) matrix of 1/0/-1) backed by CheXbert; clear errors, never a download."""
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"CheXbert weights file not found: {path} (download chexbert.pth yourself "
                                "and pass its path; FedTAR never downloads weights)")
    try:
        from f1chexbert import F1CheXbert  # optional
    except ImportError as e:
        raise ImportError(f"CheXbert labels need the optional package f1chexbert (pip install f1chexbert): {e}") from e
    os.environ["HF_HUB_OFFLINE"] = "1"
    model = F1CheXbert(chexbert_checkpoint=str(path))
    cols = [_CHEXBERT_ORDER.index(o) for o in CHEXPERT_OBSERVATIONS]

    def label(reports: Sequence[str]) -> np.ndarray:
        codes = np.array([model.get_label(r) for r in reports], dtype=int).reshape(len(reports), 14)
        return np.vectorize(_CODE_TO_LABEL.get)(codes[:, cols]).astype(np.int8)

    return label
