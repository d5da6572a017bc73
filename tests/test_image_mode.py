"""Issue 13: image mode normalised (RGB/RGBA/LA to the model's channels) and read failures in words."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import LoadImage
from PIL import Image

from data_adapters.image_mode import match_channels, read_failure


@pytest.mark.parametrize("mode,channels", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
def test_every_png_mode_becomes_the_models_channels(tmp_path, mode, channels):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(grey, "L").convert(mode).save(tmp_path / "x.png")
    image = torch.as_tensor(LoadImage(image_only=True, ensure_channel_first=True)(str(tmp_path / "x.png")))
    assert image.shape[0] == channels
    one = match_channels(image, 1)
    assert one.shape == (1, 8, 8)
    # A grey picture saved in any mode comes back as the same grey values (up to PIL's rounding).
    assert torch.allclose(one.float()[0], torch.as_tensor(grey.T, dtype=torch.float32), atol=1.0)
    assert match_channels(image, 3).shape == (3, 8, 8)


def test_an_impossible_conversion_says_so():
    with pytest.raises(ValueError, match="image has 5 channels; the model takes 1"):
        match_channels(torch.zeros(5, 4, 4), 1)


def test_a_read_failure_names_the_file_and_what_is_wrong_not_a_transform_object(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(Exception) as e:
        LoadImage(image_only=True)(str(bad))
    reason = read_failure(bad, e.value)
    assert reason.startswith(f"image {bad}:") and " at 0x" not in reason and "LoadImage object" not in reason
    assert read_failure(tmp_path / "gone.png", RuntimeError("x")) == f"image {tmp_path / 'gone.png'}: file not found"


def test_one_rgb_png_among_grey_ones_loads_with_its_site(small_federation, tmp_path):
    import shutil

    from data_adapters.records import read_manifest
    from fedtar.data.exams import load_exams
    from fedtar.data.tokenizer import ReportTokenizer

    tokenizer = ReportTokenizer.train(r.findings for r in read_manifest(small_federation[0]).records)

    shutil.copytree(small_federation[0].parent, tmp_path / "site")
    manifest = tmp_path / "site" / "manifest.csv"
    first = next((tmp_path / "site" / "images").rglob("*.png"))
    with Image.open(first) as im:
        im.convert("RGBA").save(first)
    exams = load_exams(manifest, tokenizer, image_size=32)
    assert not exams.skipped
    batch = next(exams.batches(len(exams)))
    assert batch.images.shape[1] == 1


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "I;16", "1"])
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_pil_reads_exactly_what_monai_loadimage_read(tmp_path, mode, suffix):
    """PNG/JPEG are read with PIL directly (fedtar.data.image_store.read_pil) instead of MONAI's
    LoadImage: the same values, dtype and (C, W, H) axis order for every mode, on a non-square image."""
    from fedtar.data.image_store import read_pil

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (5, 7), dtype=np.uint8), "L").convert(mode)
    path = tmp_path / f"x{suffix}"
    try:
        image.save(path)
    except (OSError, KeyError):
        assert suffix == ".jpg"  # JPEG has no such mode: nothing to compare
        return
    ours = read_pil(str(path))
    theirs = torch.as_tensor(LoadImage(image_only=True, ensure_channel_first=True, dtype=None)(str(path)).as_tensor())
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and ours.shape[1:] == (7, 5)
    assert torch.equal(ours, theirs)


def test_a_broken_png_read_with_pil_is_reported_in_words(tmp_path):
    from fedtar.data.image_store import read_pil

    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(Exception) as e:
        read_pil(str(bad))
    assert read_failure(bad, e.value).startswith(f"image {bad}: not an image format the reader knows")


def test_a_radiograph_site_never_imports_monai(tmp_path):
    """The ClientApp and a PNG read through the image store leave MONAI unimported (it costs a process
    seconds and hundreds of MB; only CT volumes and DICOM files need it)."""
    import subprocess
    import sys

    Image.fromarray(np.zeros((4, 6), dtype=np.uint8)).save(tmp_path / "x.png")
    code = ("import sys, clients.client_app, aggregator.server_app, fedtar.generator.model\n"
            "from fedtar.data.image_store import image_reader\n"
            f"assert image_reader(8)({str(tmp_path / 'x.png')!r}).shape == (1, 8, 8)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'monai'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout
