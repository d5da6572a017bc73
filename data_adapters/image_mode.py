"""Image mode on load: any decoded radiograph to the model's channels, and reader failures in words.

One RGB or RGBA PNG among grey ones used to stop a whole site (torch.stack of 1- and 3-channel
images), and a failed read was reported as MONAI's "applying transform <...LoadImage object at
0x...>". ``match_channels`` converts what can be converted (alpha dropped, RGB to luminance,
grey repeated) and raises, in words, only where no conversion exists; ``read_failure`` names
what went wrong with a file from the innermost cause of the exception.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

# ITU-R BT.601 luma, PIL's own weights for convert("L").
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def match_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """(C, H, W) -> (channels, H, W): drops an alpha channel (LA, RGBA), RGB -> grey by luma, grey -> RGB
    by repetition; any other pair is a ValueError saying which."""
    c = image.shape[0]
    if c == channels:
        return image
    if c in (2, 4):  # grey + alpha, RGB + alpha
        image, c = image[: c - 1], c - 1
        if c == channels:
            return image
    if c == 3 and channels == 1:
        grey = (image.double() * _LUMA.double().view(3, 1, 1)).sum(0, keepdim=True)
        return grey.to(image.dtype) if image.is_floating_point() else grey.round().to(image.dtype)
    if c == 1 and channels == 3:
        return image.expand(3, *image.shape[1:]).clone()
    raise ValueError(f"image has {image.shape[0]} channels; the model takes {channels} and there is no "
                     "conversion between them")


def read_failure(path: str | Path, error: BaseException) -> str:
    """Why `path` could not be read, from the innermost cause (readers wrap the real error)."""
    cause = error
    while cause.__cause__ is not None or (cause.__context__ is not None and not cause.__suppress_context__):
        cause = cause.__cause__ or cause.__context__
    if not Path(path).exists():
        return f"image {path}: file not found"
    text = re.sub(r"<[^<>]* at 0x[0-9a-f]+>", "", str(cause)).strip() or type(cause).__name__
    if type(cause).__name__ in ("UnidentifiedImageError", "ImageFileError"):
        return f"image {path}: not an image format the reader knows, or a damaged file ({text})"
    return f"image {path}: cannot be read ({type(cause).__name__}: {text})"
