"""Light training augmentation for medical images, with PIL and torch only.

Deliberately mild: a small random resized crop, a small rotation and a little brightness/contrast jitter. There is
no horizontal flip by default because laterality matters in radiology: "Is the lesion on the left?" has the
opposite answer on a mirrored image (and chest films have the heart on the patient's left). Turn `hflip` on only
for data where no question depends on side.

Every random draw comes from the `generator` passed in (seed it for reproducible samples), or torch's global RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from PIL import Image

from mile.data.errors import DataError


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


@dataclass(frozen=True)
class Augment:
    """Augmentation settings. `crop_scale` is the kept area fraction, `crop_ratio` its aspect-ratio range,
    `max_rotation` in degrees (uniform in [-max, max]), `brightness`/`contrast` the jitter amplitude
    (a factor in [1 - x, 1 + x]); `hflip` flips half the images (off by default, see the module docstring)."""

    crop_scale: tuple[float, float] = (0.85, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    max_rotation: float = 5.0
    brightness: float = 0.1
    contrast: float = 0.1
    hflip: bool = False

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise DataError(f"augment.crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale!r}")
        low, high = self.crop_ratio
        if not 0.0 < low <= high:
            raise DataError(f"augment.crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio!r}")
        for name in ("max_rotation", "brightness", "contrast"):
            value = getattr(self, name)
            if not 0.0 <= value < (180.0 if name == "max_rotation" else 1.0):
                raise DataError(f"augment.{name} out of range: {value!r}")

    def crop_box(
        self, width: int, height: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """A random (left, top, right, bottom) box covering `crop_scale` of the area with `crop_ratio` shape."""
        area = width * height * _uniform(*self.crop_scale, generator)
        log_low, log_high = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        ratio = math.exp(_uniform(log_low, log_high, generator))
        crop_w = min(width, max(1, round(math.sqrt(area * ratio))))
        crop_h = min(height, max(1, round(math.sqrt(area / ratio))))
        left = round(_uniform(0, width - crop_w, generator))
        top = round(_uniform(0, height - crop_h, generator))
        return left, top, left + crop_w, top + crop_h

    def geometric(self, image: Image.Image, generator: torch.Generator | None = None) -> Image.Image:
        """Random crop, rotation (black fill, same canvas) and optional flip of an RGB PIL image."""
        image = image.crop(self.crop_box(*image.size, generator))
        if self.max_rotation > 0:
            angle = _uniform(-self.max_rotation, self.max_rotation, generator)
            image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))
        if self.hflip and _uniform(0.0, 1.0, generator) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def photometric(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Brightness then contrast jitter on a (3, H, W) tensor in [0, 1]; the result stays in [0, 1]."""
        brightness = _uniform(1 - self.brightness, 1 + self.brightness, generator)
        contrast = _uniform(1 - self.contrast, 1 + self.contrast, generator)
        pixels = pixels * brightness
        mean = pixels.mean()
        return ((pixels - mean) * contrast + mean).clamp_(0.0, 1.0)
