"""Decode an image file safely and turn it into the model's input tensor.

Medical images arrive in many modes: 8-bit grey (L), palette (P), RGBA screenshots, 16-bit grey PNG/TIFF (I;16)
from DICOM exports. The vision tower wants RGB, so every mode is mapped to RGB here, with 16-bit and float images
min-max scaled (a plain `convert("RGB")` would clip 16-bit values to white). Files are user input, so decoding is
guarded: a declared pixel count above `max_pixels` is refused before any pixel is decoded (a tiny PNG can declare
a 100,000 x 100,000 canvas), and truncated or corrupt files raise `ImageError` naming the file.

Tensor pipeline (`load_image` / `ImageTransform`): optional augmentation (see `mile.data.augment`), resize to a
square `size` x `size` with bicubic resampling (aspect ratio not kept, as in BLIP), scale to [0, 1], then normalise
with a named preset. Only PIL and torch are used (torchvision is not a dependency).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps

from mile.data.augment import Augment
from mile.data.errors import DataError, ImageError

# Far above any VQA image (the largest in VQA-RAD is 3.2 MP) and far below a decompression bomb.
DEFAULT_MAX_PIXELS = 50_000_000

# name -> (mean, std) per RGB channel, or None for plain [0, 1] values.
NORMALIZE_PRESETS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]] | None] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # OpenAI CLIP statistics; BLIP (and so MISS / MILE) normalises with these.
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "none": None,
}

_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    """Open lazily (header only), refuse oversized images, then decode all pixels."""
    try:
        with warnings.catch_warnings():
            # We enforce our own explicit limit below; PIL's warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        width, height = image.size
        if width * height > max_pixels:
            image.close()
            raise ImageError(
                f"{path}: image is {width}x{height} = {width * height:,} pixels, above the limit max_pixels="
                f"{max_pixels:,} (decompression-bomb guard); raise max_pixels if this image is genuine"
            )
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: refused by PIL's decompression-bomb guard ({exc})") from exc
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: image file does not exist") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # unidentified, truncated, corrupt
        raise ImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Map any PIL mode to RGB: alpha composited on black, 16-bit/float grey min-max scaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        grey = image.convert("F")
        low, high = grey.getextrema()
        scale = 255.0 / (high - low) if high > low else 0.0
        return grey.point(lambda v: (v - low) * scale).convert("L").convert("RGB")
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `path` into an RGB PIL image, upright per its EXIF orientation; `ImageError` if it cannot."""
    path = Path(path)
    image = _open_checked(path, max_pixels)
    try:
        image = ImageOps.exif_transpose(image) or image
        return to_rgb(image)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot convert mode {image.mode!r} to RGB ({exc})") from exc


def check_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raise `ImageError` unless `path` decodes fully within `max_pixels` (used by `verify_images=True`)."""
    with _open_checked(Path(path), max_pixels):
        pass


def resize_square(image: Image.Image, size: int) -> Image.Image:
    """Resize to `size` x `size` with bicubic resampling (aspect ratio not kept, as BLIP's preprocessing)."""
    if not isinstance(size, int) or size <= 0:
        raise DataError(f"image size must be a positive integer, got {size!r}")
    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BICUBIC)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) with values in [0, 1]."""
    if image.mode != "RGB":
        image = to_rgb(image)
    width, height = image.size
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(height, width, 3).permute(2, 0, 1).float().div_(255.0)


def normalize(pixels: torch.Tensor, preset: str = "clip") -> torch.Tensor:
    """Normalise a (3, H, W) [0, 1] tensor with a named preset: 'imagenet', 'clip' (BLIP) or 'none'."""
    if preset not in NORMALIZE_PRESETS:
        raise DataError(f"unknown normalize preset {preset!r}; valid presets: {sorted(NORMALIZE_PRESETS)}")
    stats = NORMALIZE_PRESETS[preset]
    if stats is None:
        return pixels
    mean = torch.tensor(stats[0], dtype=pixels.dtype).view(3, 1, 1)
    std = torch.tensor(stats[1], dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - mean) / std


@dataclass(frozen=True)
class ImageTransform:
    """The configured image pipeline: path -> normalised float tensor (3, size, size).

    `augment=None` for evaluation; an `Augment` for training. Randomness comes from `generator` when given
    (reproducible per sample), else from torch's global RNG.
    """

    size: int = 384
    normalize: str = "clip"
    augment: Augment | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size <= 0:
            raise DataError(f"image size must be a positive integer, got {self.size!r}")
        if self.normalize not in NORMALIZE_PRESETS:
            raise DataError(
                f"unknown normalize preset {self.normalize!r}; valid presets: {sorted(NORMALIZE_PRESETS)}"
            )

    def __call__(
        self, path: str | os.PathLike[str], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        image = open_image(path, max_pixels=self.max_pixels)
        if self.augment is not None:
            image = self.augment.geometric(image, generator)
        pixels = to_tensor(resize_square(image, self.size))
        if self.augment is not None:
            pixels = self.augment.photometric(pixels, generator)
        return normalize(pixels, self.normalize)


def load_image(
    path: str | os.PathLike[str],
    size: int,
    *,
    normalize: str = "clip",
    augment: Augment | None = None,
    generator: torch.Generator | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """One-call form of `ImageTransform(size, normalize, augment, max_pixels)(path, generator)`."""
    transform = ImageTransform(size=size, normalize=normalize, augment=augment, max_pixels=max_pixels)
    return transform(path, generator)
