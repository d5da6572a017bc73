"""A site's images read from disk as batches need them, in memory bounded by a config value.

Images are decoded once into their stored form (uint8 radiographs, the volume's own dtype for
CT) and kept in an LRU cache of at most ``data.cache_mib``; the float transform that feeds the
model (MONAI's ScaleIntensity + Resize for radiographs, ``ct.volume_transform``'s steps for CT)
runs per batch on those sources, so a batch holds exactly the values a full pre-load into
float32 gave. At load only headers are checked, so a run starts without decoding a site; an
image that fails later is skipped and reported (``ImageStore.skipped``), never stopping a run.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from data_adapters.ct import HUWindows
from data_adapters.image_mode import match_channels, read_failure
from data_adapters.records import SkippedRow

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii", ".nii.gz")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
# What MONAI's tensors widen unsigned types to (monai.utils.type_conversion.UNSUPPORTED_TYPES).
MONAI_WIDENED = {np.dtype("uint16"): np.int32, np.dtype("uint32"): np.int64, np.dtype("uint64"): np.int64}


@dataclass(frozen=True)
class ImageReader:
    """How one kind of image goes from file to model input, in two halves.

    decode: file -> source tensor as stored (what the cache keeps);
    finish: a batch's sources -> (n, C, ...) float32 in [0, 1].
    """

    decode: Callable[[str], torch.Tensor]
    finish: Callable[[Sequence[torch.Tensor]], torch.Tensor]

    def __call__(self, path: str | Path) -> torch.Tensor:
        """One image as the model sees it (C, ...)."""
        return self.finish([self.decode(str(path))])[0]


class RadiographFinish:
    """Min-max to [0, 1] per image, area resize to size x size: MONAI's ScaleIntensity(0, 1) +
    Resize((size, size)) with the same float32 operations (tested bitwise), done per group of
    same-shape sources instead of per image."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, sources: Sequence[torch.Tensor]) -> torch.Tensor:
        size, groups = self.size, {}
        for i, s in enumerate(sources):
            groups.setdefault(tuple(s.shape), []).append(i)
        channels = {shape[0] for shape in groups}
        if len(channels) > 1:
            raise ValueError(f"images of one batch differ in channels: {sorted(channels)}")
        out = torch.empty(len(sources), channels.pop(), size, size)
        for shape, idx in groups.items():
            x = torch.stack([torch.as_tensor(sources[i]) for i in idx]).float()
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            hi = x.amax(dim=(1, 2, 3), keepdim=True)
            x = torch.where(hi > lo, (x - lo) / (hi - lo), x * 0.0)
            if shape[1:] != (size, size):
                x = F.interpolate(x, size=(size, size), mode="area")
            out[idx] = x
        return out


class VolumeFinish:
    """ct.volume_transform after its LoadImage, per volume (each has its own affine)."""

    def __init__(self, size: int, depth: int, windows: Sequence[str], spacing: Sequence[float]):
        from monai.transforms import CastToType, Compose, Orientation, Resize, Spacing

        steps: list = [CastToType(torch.float32),
                       Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))]
        if spacing:
            steps.append(Spacing(pixdim=tuple(spacing), mode="bilinear"))
        steps += [HUWindows(windows), Resize((size, size, depth))]
        self.per_volume = Compose(steps)

    def __call__(self, sources: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([torch.as_tensor(self.per_volume(s), dtype=torch.float32) for s in sources])


def read_pil(path: str) -> torch.Tensor:
    """A PNG or JPEG as stored, channel first, in the axis order of MONAI's LoadImage (its PILReader
    swaps PIL's rows and columns: (C, W, H)), so every base trained through LoadImage sees the
    same tensors (tested bitwise against it). Read with PIL directly: importing MONAI costs a
    process about 4 s and 240 MB, paid by every Flower ClientApp process."""
    with Image.open(path) as im:
        array = np.moveaxis(np.asarray(im), 0, 1)
    array = array.astype(MONAI_WIDENED.get(array.dtype, array.dtype), copy=False)
    image = torch.from_numpy(np.ascontiguousarray(array))
    return image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1).contiguous()


class Decode:
    """File -> source tensor as stored (channel first); radiographs drop MONAI's metadata,
    volumes keep it (their affine orients them)."""

    def __init__(self, keep_meta: bool):
        self.keep_meta = keep_meta
        self._load = None

    def load(self, path: str):
        if self._load is None:  # volumes and formats PIL does not read (DICOM...): MONAI's LoadImage
            from monai.transforms import LoadImage

            self._load = LoadImage(image_only=True, ensure_channel_first=True, dtype=None)
        return self._load(path)

    def __call__(self, path: str) -> torch.Tensor:
        if self.keep_meta:
            return self.load(path)
        if path.lower().endswith(PIL_SUFFIXES):
            image = read_pil(path)
        else:
            image = torch.as_tensor(self.load(path).as_tensor())
        # Radiographs are grey: RGB/RGBA/LA files become one channel (the model expands it to its encoder's).
        return match_channels(image.contiguous(), 1)


def image_reader(image_size: int, volume_depth: int = 0, hu_windows: Sequence[str] = (),
                 voxel_spacing: Sequence[float] = ()) -> ImageReader:
    """Radiographs (PNG/JPG): decoded as stored, scaled to [0, 1] and resized per batch.
    CT (volume_depth > 0): NIfTI HU volumes as one channel per HU window (data_adapters.ct)."""
    if volume_depth:
        return ImageReader(Decode(keep_meta=True), VolumeFinish(
            image_size, volume_depth, hu_windows or ("lung", "mediastinal", "bone"), voxel_spacing))
    return ImageReader(Decode(keep_meta=False), RadiographFinish(image_size))


def check_image(path: Path, reader: ImageReader) -> None:
    """Raise if the file is missing or not a readable image, reading headers only where the
    format allows (PIL's verify checks a PNG's chunks without decoding; NIfTI: its header)."""
    name = path.name.lower()
    if name.endswith(VOLUME_SUFFIXES):
        nib.load(str(path))
    elif name.endswith(PIL_SUFFIXES):
        with Image.open(path) as im:
            im.verify()
    else:  # other formats (DICOM, ...): a full decode, as before streaming
        reader.decode(str(path))


@dataclass
class LoadedImages:
    images: torch.Tensor | None        # (m, C, ...) for the keys that loaded, in key order; None if none did
    ok: torch.Tensor                   # (n,) bool over the keys asked for
    failed: list[tuple[int, SkippedRow]] = field(default_factory=list)  # newly failed keys, with the skip


class ImageStore:
    """One site's images by key (0..n-1): decoded sources in an LRU of at most `cache_bytes`.

    In a DataLoader worker the bound is shared among the workers. A key that fails to load is
    remembered as bad (one byte per image) and listed once in `skipped`.
    """

    def __init__(self, paths: Sequence[Path], lines: Sequence[int], origin: Path, reader: ImageReader,
                 cache_bytes: int, skipped: list[SkippedRow] | None = None):
        self.paths, self.lines, self.origin, self.reader = list(paths), list(lines), origin, reader
        self.cache_bytes = cache_bytes
        self.skipped = skipped if skipped is not None else []
        self.bad = torch.zeros(len(self.paths), dtype=torch.bool)
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cached = 0

    def __len__(self) -> int:
        return len(self.paths)

    def _budget(self) -> int:
        info = torch.utils.data.get_worker_info()
        return self.cache_bytes // info.num_workers if info is not None else self.cache_bytes

    def _source(self, key: int) -> torch.Tensor:
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        source = self.reader.decode(str(self.paths[key]))
        size, budget = source.element_size() * source.nelement(), self._budget()
        if size <= budget:
            self._cache[key] = source
            self._cached += size
            while self._cached > budget:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.element_size() * old.nelement()
        return source

    def load(self, keys: torch.Tensor) -> LoadedImages:
        """Model-ready images of `keys`; unreadable ones are left out, marked bad and reported."""
        sources, ok, failed = [], torch.zeros(len(keys), dtype=torch.bool), []
        for j, key in enumerate(keys.tolist()):
            if self.bad[key]:
                continue
            try:
                sources.append(self._source(key))
                ok[j] = True
            except Exception as e:  # any reader failure: a file removed, truncated or replaced since the check
                failed.append((key, SkippedRow(self.origin, self.lines[key],
                                               f"unreadable {read_failure(self.paths[key], e)}")))
        self.mark_bad(failed)
        return LoadedImages(self.reader.finish(sources) if sources else None, ok, failed)

    def mark_bad(self, failed: Sequence[tuple[int, SkippedRow]]) -> None:
        for key, skip in failed:
            if not self.bad[key]:
                self.bad[key] = True
                self.skipped.append(skip)
                log.warning("skipped during training: %s", skip)


class StoreUnion:
    """Several sites' stores as one key space (central training streams the union of sites)."""

    def __init__(self, stores: Sequence[ImageStore | StoreUnion]):
        flat = [s for u in stores for s in (u.stores if isinstance(u, StoreUnion) else [u])]
        self.stores = list({id(s): s for s in flat}.values())  # a site joined twice is read through one store
        self.offsets = torch.tensor([0, *torch.cumsum(torch.tensor([len(s) for s in self.stores]), 0).tolist()])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def offset_of(self, store: ImageStore) -> int:
        return int(self.offsets[next(i for i, s in enumerate(self.stores) if s is store)])

    def translate(self, source: ImageStore | StoreUnion, keys: torch.Tensor) -> torch.Tensor:
        """Keys of `source` (one of the stores joined, or a union of some) as keys of this union."""
        if isinstance(source, ImageStore):
            return keys + self.offset_of(source)
        part = torch.searchsorted(source.offsets, keys, right=True) - 1
        shift = torch.tensor([self.offset_of(s) - int(source.offsets[i]) for i, s in enumerate(source.stores)])
        return keys + shift[part]

    @property
    def bad(self) -> torch.Tensor:
        return torch.cat([s.bad for s in self.stores]) if self.stores else torch.zeros(0, dtype=torch.bool)

    def load(self, keys: torch.Tensor) -> LoadedImages:
        part = torch.searchsorted(self.offsets, keys, right=True) - 1
        ok = torch.zeros(len(keys), dtype=torch.bool)
        failed, pieces, order = [], [], []
        for p in torch.unique(part).tolist():
            where = torch.nonzero(part == p).flatten()
            got = self.stores[p].load(keys[where] - self.offsets[p])
            ok[where] = got.ok
            failed += [(key + int(self.offsets[p]), skip) for key, skip in got.failed]
            if got.images is not None:
                pieces.append(got.images)
                order.append(where[got.ok])
        if not pieces:
            return LoadedImages(None, ok, failed)
        images = torch.cat(pieces)
        # back into the order of `keys` (the loaded ones only)
        rank = torch.empty(len(keys), dtype=torch.long)
        rank[torch.cat(order)] = torch.arange(len(images))
        return LoadedImages(images[rank[ok]], ok, failed)

    def mark_bad(self, failed: Sequence[tuple[int, SkippedRow]]) -> None:
        for key, skip in failed:
            p = int(torch.searchsorted(self.offsets, torch.tensor(key), right=True)) - 1
            self.stores[p].mark_bad([(key - int(self.offsets[p]), skip)])
