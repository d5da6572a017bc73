"""Reading DICOM pixels the way a viewer shows them, and CT series as HU volumes.

Projection radiographs: modality rescale (slope/intercept) -> VOI window (the
file's WindowCenter/WindowWidth, else the full range) -> [0, 1] -> inverted for
MONOCHROME1, so a MONOCHROME1 file and its MONOCHROME2 equivalent give the
same array. Images whose header says or suggests burned-in text are refused
(``burned_in_reason``) unless the caller allows them. CT: each slice rescaled to Hounsfield units (slopes may differ per
slice), slices ordered by their position along the slice normal (not by file
name or InstanceNumber), and an affine in RAS for NIfTI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError


class DicomReadError(ValueError):
    """A DICOM file that cannot be used; the message names the file and the problem."""


class BurnedInError(DicomReadError):
    """An image that may carry text in its pixels (names, dates, ids): denied unless allowed."""


# Modalities whose images usually carry burned-in text: ultrasound, "other", secondary and
# document captures, photographs (external camera, endoscopy, microscopy, ophthalmic, IVUS).
BURNED_IN_MODALITIES = frozenset({"US", "IVUS", "OT", "SC", "DOC", "XC", "ES", "GM", "SM", "OP"})
# Secondary capture (…1.1.7, …1.1.7.x) and visible-light photograph (…1.1.77.x) storage classes.
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
SCREEN_CAPTURE_TYPES = frozenset({"SCREEN SAVE", "SCREENSAVE", "SCREEN SHOT", "SCREENSHOT", "SCREEN CAPTURE"})


def burned_in_reason(ds: pydicom.Dataset) -> str | None:
    """Why an image may have text burned into its pixels, or None.

    PS3.15's basic profile cleans headers, not pixels, so an image is denied by default when its
    header says or suggests burned-in text; the site may keep such images after its own review.
    """
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return "BurnedInAnnotation is YES"
    if str(ds.get("RecognizableVisualFeatures", "")).strip().upper() == "YES":
        return "RecognizableVisualFeatures is YES"
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality in BURNED_IN_MODALITIES:
        return f"modality {modality}"
    sop = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    if sop.startswith(SECONDARY_CAPTURE_PREFIX):
        return f"secondary-capture or photograph SOP class {sop}"
    raw = ds.get("ImageType") or []
    image_type = [str(v).strip().upper() for v in ([raw] if isinstance(raw, str) else raw)]
    if SCREEN_CAPTURE_TYPES & set(image_type):
        return f"ImageType {'/'.join(image_type)}"
    if image_type[:2] == ["DERIVED", "SECONDARY"]:
        return f"ImageType {'/'.join(image_type)}"
    return None


def check_burned_in(ds: pydicom.Dataset, path: str | Path, allow: bool = False) -> None:
    """Raise BurnedInError (naming the file and the reason) unless the image is clear or allowed."""
    reason = None if allow else burned_in_reason(ds)
    if reason:
        raise BurnedInError(f"{path}: possible burned-in text, {reason}, skipped (--allow-burned-in keeps it "
                            "after the site's own review)")


def read_header(path: str | Path) -> pydicom.Dataset:
    """Header only (no pixel data); raises DicomReadError for non-DICOM or truncated files."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, AttributeError) as e:
        raise DicomReadError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from None


def _pixels(ds: pydicom.Dataset, path: str | Path) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array, dtype=np.float64)
    except Exception as e:  # truncated pixel data, unsupported transfer syntax, missing handler
        raise DicomReadError(f"{path}: cannot decode pixel data ({type(e).__name__}: {e})") from None


def _first(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        value = value[0]
    return float(value)


def rescaled(ds: pydicom.Dataset, path: str | Path = "<dataset>") -> np.ndarray:
    """Stored values -> modality values (HU for CT) with RescaleSlope/RescaleIntercept."""
    slope = _first(ds.get("RescaleSlope")) or 1.0
    intercept = _first(ds.get("RescaleIntercept")) or 0.0
    return _pixels(ds, path) * slope + intercept


def read_projection(path: str | Path, window: tuple[float, float] | None = None,
                    allow_burned_in: bool = False) -> np.ndarray:
    """A radiograph as float32 in [0, 1], bright = dense, whatever the photometric interpretation.

    Images that may carry burned-in text raise BurnedInError unless ``allow_burned_in``.
    """
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError, AttributeError) as e:
        raise DicomReadError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from None
    check_burned_in(ds, path, allow_burned_in)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomReadError(f"{path}: photometric interpretation {photometric} is not a grayscale radiograph")
    values = rescaled(ds, path)
    if values.ndim != 2:
        raise DicomReadError(f"{path}: expected one 2D frame, got pixel array of shape {values.shape}")
    if window is None:
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        window = (center, width) if center is not None and width else None
    if window is not None:
        low, high = window[0] - window[1] / 2, window[0] + window[1] / 2
    else:
        low, high = float(values.min()), float(values.max())
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
    if photometric == "MONOCHROME1":  # low values are displayed bright
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


@dataclass
class CTVolume:
    hu: np.ndarray          # (Z, Y, X) float32 Hounsfield units, slices in anatomical order
    affine: np.ndarray      # 4x4 voxel (x, y, z) -> RAS millimetres, for NIfTI
    spacing: tuple[float, float, float]  # (z, y, x) mm


def read_ct_series(paths: Sequence[str | Path]) -> CTVolume:
    """One series' slices (any order) as a volume sorted along the slice normal."""
    if not paths:
        raise DicomReadError("empty CT series")
    slices = []
    for p in paths:
        try:
            ds = pydicom.dcmread(p)
        except (InvalidDicomError, EOFError, OSError, ValueError, AttributeError) as e:
            raise DicomReadError(f"{p}: not a readable DICOM file ({type(e).__name__}: {e})") from None
        for attr in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if attr not in ds:
                raise DicomReadError(f"{p}: CT slice without {attr}")
        slices.append((p, ds))
    orientation = np.array(slices[0][1].ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = [float(np.dot(np.array(ds.ImagePositionPatient, dtype=np.float64), normal)) for _, ds in slices]
    order = np.argsort(positions, kind="stable")
    ordered = [slices[i] for i in order]
    planes = [rescaled(ds, p) for p, ds in ordered]
    odd = next(((p, a.shape) for (p, _), a in zip(ordered, planes) if a.shape != planes[0].shape), None)
    if odd is not None:  # one slice of another size: the series is not one volume (its study is skipped)
        raise DicomReadError(f"{odd[0]}: CT slice of {odd[1][0]}x{odd[1][1]} pixels in a series of "
                             f"{planes[0].shape[0]}x{planes[0].shape[1]}")
    hu = np.stack(planes).astype(np.float32)
    sorted_pos = np.sort(positions)
    dz = float(np.median(np.diff(sorted_pos))) if len(sorted_pos) > 1 else float(
        _first(ordered[0][1].get("SliceThickness")) or 1.0)
    if dz <= 0:
        raise DicomReadError(f"{ordered[0][0]}: CT series with duplicate slice positions")
    dy, dx = (float(v) for v in ordered[0][1].PixelSpacing)  # row spacing, column spacing
    origin = np.array(ordered[0][1].ImagePositionPatient, dtype=np.float64)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_dir * dx, col_dir * dy, normal * dz, origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS (DICOM) -> RAS (NIfTI)
    return CTVolume(hu=hu, affine=affine, spacing=(dz, dy, dx))
