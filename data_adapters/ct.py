"""Longitudinal CT: HU volumes on disk (NIfTI) and the MONAI transform that feeds the model.

A CT exam is stored once, in Hounsfield units, as NIfTI with its RAS affine
(``write_nifti``); hand-made manifests may point at existing ``.nii``/``.nii.gz``
volumes too. At load time ``volume_transform`` reorients to RAS, optionally
resamples to a voxel spacing, turns HU into one channel per window (lung,
mediastinal, bone by default) and resizes to the configured volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from .dicom_io import CTVolume

# (center, width) in HU
HU_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinal": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}


class HUWindows:
    """(1, ...) HU -> (len(windows), ...) each window clipped and scaled to [0, 1] (a step of a MONAI
    Compose; a plain callable, so that reading radiographs never imports MONAI)."""

    def __init__(self, windows: Sequence[str] = ("lung", "mediastinal", "bone")) -> None:
        unknown = [w for w in windows if w not in HU_WINDOWS]
        if unknown:
            raise ValueError(f"unknown HU window(s) {unknown} (known: {', '.join(HU_WINDOWS)})")
        self.windows = tuple(windows)

    def __call__(self, hu: torch.Tensor) -> torch.Tensor:
        hu = torch.as_tensor(hu, dtype=torch.float32)
        channels = []
        for name in self.windows:
            center, width = HU_WINDOWS[name]
            channels.append(((hu[0] - (center - width / 2)) / width).clamp(0.0, 1.0))
        return torch.stack(channels)


def volume_transform(size: int, depth: int, windows: Sequence[str] = ("lung", "mediastinal", "bone"),
                     spacing: Sequence[float] = ()):
    """NIfTI HU volume -> (windows, size, size, depth) in [0, 1], RAS orientation (a MONAI Compose)."""
    from monai.transforms import Compose, LoadImage, Orientation, Resize, Spacing

    steps: list = [LoadImage(image_only=True, ensure_channel_first=True),
                   Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))]
    if spacing:
        steps.append(Spacing(pixdim=tuple(spacing), mode="bilinear"))
    steps += [HUWindows(windows), Resize((size, size, depth))]
    return Compose(steps)


def write_nifti(volume: CTVolume, path: Path) -> Path:
    """HU volume as NIfTI (x, y, z) with its affine and an empty description field."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.ascontiguousarray(volume.hu.transpose(2, 1, 0)), volume.affine)
    image.header["descrip"] = b""
    nib.save(image, str(path))
    return path
