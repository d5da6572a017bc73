"""Chest-radiograph-like images whose shapes follow the findings.

A frontal view on a [-1, 1]^2 grid: body, two dark lung fields, heart,
spine; each finding adds a shape whose size and intensity grow with its
severity, on its side. The site's acquisition (field of view, contrast,
brightness, noise) is applied last, and noise falls and contrast rises with
the calendar year (newer detectors), which is the acquisition drift. A site
with a drift event switches to its new scanner from its change year on.
"""

from __future__ import annotations

import numpy as np

from .patients import SiteProfile


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _blob(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))


def render(
    severity: dict[str, int],
    sides: dict[str, str],
    site: SiteProfile,
    year: int,
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one exam as a uint8 (size, size) image."""
    scanner = site.scanner_at(year)
    lin = np.linspace(-1, 1, size) * scanner.field_of_view
    x, y = np.meshgrid(lin, lin)
    img = np.full((size, size), 0.1)
    img[_ellipse(x, y, 0, 0.05, 0.85, 1.0)] = 0.55
    lungs = _ellipse(x, y, -0.42, -0.1, 0.3, 0.58) | _ellipse(x, y, 0.42, -0.1, 0.3, 0.58)
    img[lungs] = 0.18
    img[np.abs(x) < 0.04] = 0.7
    heart_rx = 0.2 * (1 + 0.22 * severity.get("Cardiomegaly", 0))
    img[_ellipse(x, y, 0.06, 0.3, heart_rx, 0.2)] = 0.72

    def side_x(finding: str, offset: float = 0.42) -> float:
        # Radiological convention: the patient's left is on the image's right.
        return offset if sides.get(finding, "left") == "left" else -offset

    lung_of = lambda f: _ellipse(x, y, side_x(f), -0.1, 0.3, 0.58)  # noqa: E731
    if s := severity.get("Pleural Effusion", 0):
        img[lung_of("Pleural Effusion") & (y > 0.42 - 0.16 * s)] = 0.68
    if s := severity.get("Consolidation", 0):
        img += 0.45 * _blob(x, y, side_x("Consolidation"), 0.0, 0.05 + 0.035 * s) * lungs
    if s := severity.get("Pneumothorax", 0):
        region = lung_of("Pneumothorax") & (y < -0.5 + 0.14 * s)
        img[region] = 0.02
        edge = np.abs(y - (-0.5 + 0.14 * s)) < 0.025
        img[lung_of("Pneumothorax") & edge] = 0.5
    if s := severity.get("Atelectasis", 0):
        band = np.abs(y - 0.28) < 0.02 + 0.018 * s
        img[lung_of("Atelectasis") & band] += 0.35
    if s := severity.get("Lung Lesion", 0):
        img[_ellipse(x, y, side_x("Lung Lesion", 0.45), -0.32, 0.03 + 0.022 * s, 0.03 + 0.022 * s)] = 0.8
    if s := severity.get("Edema", 0):
        haze = _blob(x, y, -0.22, 0.0, 0.25) + _blob(x, y, 0.22, 0.0, 0.25)
        img += 0.11 * s * haze * lungs * (0.8 + 0.4 * rng.random((size, size)))
    if severity.get("Support Devices", 0):
        tube = (np.abs(x - (-0.02 - 0.12 * (y + 1) / 1.3)) < 0.015) & (y < 0.3)
        img[tube] = 0.95

    years = year - 2010
    gamma = scanner.gamma * (1 - 0.03 * years)
    noise = scanner.noise * max(0.25, 1 - 0.08 * years)
    img = np.clip(img, 0, 1) ** gamma + scanner.brightness
    img = img + rng.normal(0.0, noise, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
