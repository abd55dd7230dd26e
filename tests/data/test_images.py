"""Image decoding (every mode to RGB), the decompression-bomb guard, corrupt files, resizing and normalising."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import torch
from data_builders import write_image
from PIL import Image

from mile.data.augment import Augment
from mile.data.errors import DataError, ImageError
from mile.data.images import (
    NORMALIZE_PRESETS,
    ImageTransform,
    check_image,
    load_image,
    normalize,
    open_image,
    resize_square,
    to_tensor,
)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A few-byte PNG that declares a huge canvas: the decompression bomb shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("RGB", "JPEG"), ("L", "JPEG"), ("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("1", "PNG")]
    + [("I;16", "PNG"), ("I", "TIFF"), ("F", "TIFF"), ("CMYK", "JPEG"), ("P", "GIF")],
)
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str, fmt: str) -> None:
    path = write_image(tmp_path / f"img.{fmt.lower()}", mode, size=(12, 10), fmt=fmt)
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (12, 10)


def test_grey_is_replicated_and_alpha_composited_on_black(tmp_path: Path) -> None:
    Image.new("L", (2, 2), 128).save(tmp_path / "grey.png")
    assert open_image(tmp_path / "grey.png").getpixel((0, 0)) == (128, 128, 128)
    Image.new("RGBA", (2, 2), (200, 100, 50, 0)).save(tmp_path / "clear.png")
    assert open_image(tmp_path / "clear.png").getpixel((0, 0)) == (0, 0, 0)
    Image.new("RGBA", (2, 2), (200, 100, 50, 255)).save(tmp_path / "opaque.png")
    assert open_image(tmp_path / "opaque.png").getpixel((0, 0)) == (200, 100, 50)


def test_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putdata([0, 1])
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    rgb = open_image(tmp_path / "p.png")
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((1, 0)) == (0, 255, 0)


def test_16_bit_grey_is_min_max_scaled_not_clipped(tmp_path: Path) -> None:
    image = Image.new("I;16", (3, 1))
    image.putdata([1000, 2000, 4000])  # a plain convert("RGB") would make all three white
    image.save(tmp_path / "deep.png")
    rgb = open_image(tmp_path / "deep.png")
    assert [rgb.getpixel((x, 0))[0] for x in range(3)] == [0, 85, 255]
    flat = Image.new("I;16", (2, 1), 3000)
    flat.save(tmp_path / "flat.png")
    assert open_image(tmp_path / "flat.png").getpixel((0, 0)) == (0, 0, 0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (4, 2)).save(tmp_path / "o.jpg", exif=exif)
    assert open_image(tmp_path / "o.jpg").size == (2, 4)


def _truncated(tmp_path: Path, fmt: str) -> Path:
    full = write_image(tmp_path / f"full.{fmt.lower()}", size=(64, 64), fmt=fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return cut


@pytest.mark.parametrize(
    "kind", ["zero", "garbage", "truncated_png", "truncated_jpeg", "missing", "directory"]
)
def test_corrupt_files_raise_image_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.jpg"
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"this is not an image at all" * 10)
    elif kind == "truncated_png":
        path = _truncated(tmp_path, "PNG")
    elif kind == "truncated_jpeg":
        path = _truncated(tmp_path, "JPEG")
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(ImageError) as info:
        check_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageError):
        open_image(path)


def test_decompression_bomb_guard_explicit_limit(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.png", size=(40, 30), fmt="PNG")
    with pytest.raises(ImageError, match=r"40x30 = 1,200 pixels, above the limit max_pixels=1,000"):
        open_image(path, max_pixels=1000)
    assert open_image(path, max_pixels=1200).size == (40, 30)


def test_decompression_bomb_guard_default_refuses_before_decoding(tmp_path: Path) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", 8000, 8000)  # 64 MP declared in a ~60-byte file
    with pytest.raises(ImageError, match="decompression-bomb guard"):
        check_image(bomb)
    huge = png_header_only(tmp_path / "huge.png", 100_000, 100_000)  # PIL's own guard fires first
    with pytest.raises(ImageError, match="decompression-bomb"):
        open_image(huge, max_pixels=10**12)


def test_resize_square_and_to_tensor(tmp_path: Path) -> None:
    image = open_image(write_image(tmp_path / "a.png", size=(30, 20), fmt="PNG"))
    square = resize_square(image, 16)
    assert square.size == (16, 16)
    pixels = to_tensor(square)
    assert pixels.shape == (3, 16, 16) and pixels.dtype == torch.float32
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    solid = to_tensor(Image.new("RGB", (2, 3), (255, 0, 51)))
    assert solid.shape == (3, 3, 2)
    assert torch.allclose(solid[:, 0, 0], torch.tensor([1.0, 0.0, 0.2]))
    for bad in (0, -3, 2.5):
        with pytest.raises(DataError, match="positive integer"):
            resize_square(image, bad)  # type: ignore[arg-type]


def test_normalize_presets() -> None:
    grey = torch.full((3, 2, 2), 0.5)
    assert torch.equal(normalize(grey, "none"), grey)
    imagenet = normalize(grey, "imagenet")[:, 0, 0]
    expected = [(0.5 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)]
    assert torch.allclose(imagenet, torch.tensor(expected))
    mean, std = NORMALIZE_PRESETS["clip"]
    assert mean == (0.48145466, 0.4578275, 0.40821073) and std == (0.26862954, 0.26130258, 0.27577711)
    assert torch.allclose(
        normalize(torch.tensor(mean).view(3, 1, 1).expand(3, 2, 2), "clip"), torch.zeros(3, 2, 2)
    )
    with pytest.raises(
        DataError, match=r"unknown normalize preset 'bert'; valid presets: \['clip', 'imagenet', 'none'\]"
    ):
        normalize(grey, "bert")


def test_load_image_and_transform(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.jpg", "L", size=(40, 30))
    pixels = load_image(path, 24, normalize="imagenet")
    assert pixels.shape == (3, 24, 24) and pixels.dtype == torch.float32
    plain = load_image(path, 24, normalize="none")
    assert torch.allclose(normalize(plain, "imagenet"), pixels)
    with pytest.raises(DataError, match="unknown normalize preset"):
        ImageTransform(size=24, normalize="bert")
    with pytest.raises(DataError, match="positive integer"):
        ImageTransform(size=0)
    with pytest.raises(ImageError):
        load_image(tmp_path / "absent.jpg", 24)


# ---- augmentation ------------------------------------------------------------------------------------------------


def test_augmentation_is_seeded_and_mild(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", size=(64, 48), fmt="PNG")
    transform = ImageTransform(size=32, normalize="none", augment=Augment())
    first = transform(path, torch.Generator().manual_seed(1))
    again = transform(path, torch.Generator().manual_seed(1))
    other = transform(path, torch.Generator().manual_seed(2))
    plain = ImageTransform(size=32, normalize="none")(path)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.shape == (3, 32, 32) and first.min() >= 0.0 and first.max() <= 1.0
    assert (first - plain).abs().mean() < 0.25  # mild: still close to the original


def test_augmentation_uses_global_rng_without_generator(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", size=(64, 48), fmt="PNG")
    transform = ImageTransform(size=16, augment=Augment())
    torch.manual_seed(5)
    first = transform(path)
    torch.manual_seed(5)
    assert torch.equal(first, transform(path))


def test_no_horizontal_flip_by_default() -> None:
    assert Augment().hflip is False
    image = Image.new("RGB", (20, 10))
    image.paste((255, 255, 255), (0, 0, 5, 10))  # white band on the left
    no_change = Augment(crop_scale=(1.0, 1.0), crop_ratio=(2.0, 2.0), max_rotation=0.0)
    for seed in range(10):
        out = no_change.geometric(image, torch.Generator().manual_seed(seed))
        assert out.getpixel((0, 5)) == (255, 255, 255) and out.getpixel((19, 5)) == (0, 0, 0)
    flips = Augment(crop_scale=(1.0, 1.0), crop_ratio=(2.0, 2.0), max_rotation=0.0, hflip=True)
    lefts = {flips.geometric(image, torch.Generator().manual_seed(s)).getpixel((0, 5)) for s in range(20)}
    assert lefts == {(255, 255, 255), (0, 0, 0)}


def test_crop_box_stays_inside_the_image() -> None:
    augment = Augment(crop_scale=(0.5, 1.0), crop_ratio=(0.5, 2.0))
    generator = torch.Generator().manual_seed(0)
    for width, height in [(1, 1), (3, 100), (100, 3), (64, 48)]:
        for _ in range(50):
            left, top, right, bottom = augment.crop_box(width, height, generator)
            assert 0 <= left < right <= width and 0 <= top < bottom <= height


@pytest.mark.parametrize(
    "kwargs",
    [{"crop_scale": (0.0, 1.0)}, {"crop_scale": (0.9, 0.8)}, {"crop_ratio": (0.0, 1.0)}]
    + [{"max_rotation": -1.0}, {"brightness": 1.5}, {"contrast": -0.1}],
)
def test_augment_validates_settings(kwargs: dict) -> None:
    with pytest.raises(DataError, match="augment"):
        Augment(**kwargs)
