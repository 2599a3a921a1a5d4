"""Reading and writing image files: EXIF orientation applied, bit depths kept."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from srcnn_fast.imagefile import read_image, write_image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(orientation: int, tmp_path: Path) -> None:
    from PIL import Image, ImageOps

    rgb = np.random.default_rng(orientation).integers(0, 256, (5, 8, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path, exif=exif)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_is_applied_to_jpeg(orientation: int, tmp_path: Path) -> None:
    """Phone photos: a JPEG whose EXIF says "rotate" comes out upright. The same pixels are
    saved twice, upright and with the orientation tag (the compressed data is identical), so
    the expected result is Pillow's transpose of our upright decode, bit for bit."""
    from PIL import Image

    rgb = np.random.default_rng(orientation).integers(0, 256, (16, 24, 3)).astype(np.uint8)
    for name, value in (("upright.jpg", 1), ("tagged.jpg", orientation)):
        exif = Image.Exif()
        exif[0x0112] = value
        Image.fromarray(rgb).save(tmp_path / name, exif=exif, quality=95)
    upright = Image.fromarray(read_image(tmp_path / "upright.jpg"))
    method = getattr(Image.Transpose, _PILLOW_TRANSPOSE[orientation])
    expected = np.asarray(upright.transpose(method))
    np.testing.assert_array_equal(read_image(tmp_path / "tagged.jpg"), expected)


#: EXIF orientation -> Pillow's operation for it (as in ImageOps.exif_transpose).
_PILLOW_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


def test_sixteen_bit_round_trip(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    write_image(tmp_path / "deep.png", image)
    back = read_image(tmp_path / "deep.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, image)


# --- formats, layouts and depths -------------------------------------------------------------

LOSSLESS = {  # extension -> the (channels, dtype) it keeps exactly
    ".png": [
        (1, np.uint8),
        (2, np.uint8),
        (3, np.uint8),
        (4, np.uint8),
        (1, np.uint16),
        (2, np.uint16),
        (3, np.uint16),
        (4, np.uint16),
    ],
    ".tif": [
        (1, np.uint8),
        (3, np.uint8),
        (4, np.uint8),
        (1, np.uint16),
        (3, np.uint16),
        (4, np.uint16),
    ],
    ".bmp": [(1, np.uint8), (3, np.uint8), (4, np.uint8)],
}


def _random(channels: int, dtype, seed: int = 0) -> np.ndarray:
    shape = (9, 13) if channels == 1 else (9, 13, channels)
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)


@pytest.mark.parametrize(
    ("ext", "channels", "dtype"),
    [(ext, c, d) for ext, layouts in LOSSLESS.items() for c, d in layouts],
)
def test_lossless_formats_round_trip(ext: str, channels: int, dtype, tmp_path: Path) -> None:
    image = _random(channels, dtype)
    write_image(tmp_path / f"x{ext}", image)
    back = read_image(tmp_path / f"x{ext}")
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, image)


def test_gray_alpha_becomes_rgba_where_the_format_has_no_gray_alpha(tmp_path: Path) -> None:
    image = _random(2, np.uint8)
    write_image(tmp_path / "x.tif", image)
    np.testing.assert_array_equal(read_image(tmp_path / "x.tif"), image[..., [0, 0, 0, 1]])


@pytest.mark.parametrize(
    ("ext", "channels"), [(".jpg", 1), (".jpg", 3), (".webp", 3), (".webp", 4)]
)
def test_lossy_formats_keep_layout(ext: str, channels: int, tmp_path: Path) -> None:
    image = _random(channels, np.uint8)
    write_image(tmp_path / f"x{ext}", image)
    back = read_image(tmp_path / f"x{ext}")
    assert back.shape == image.shape and back.dtype == np.uint8


def test_pillow_written_layouts_decode_with_their_transparency(tmp_path: Path) -> None:
    from PIL import Image

    gray = _random(1, np.uint8)
    alpha = _random(1, np.uint8, seed=1)
    # Gray + alpha PNG and TIFF: OpenCV would give RGBA (PNG) or drop the alpha (TIFF).
    for ext in (".png", ".tif"):
        Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / f"la{ext}")
        np.testing.assert_array_equal(read_image(tmp_path / f"la{ext}"), np.dstack([gray, alpha]))
    # Palette with a transparent entry: RGBA, transparency kept (as Pillow expands it).
    palette = Image.fromarray(gray).convert("P")
    palette.save(tmp_path / "p.png", transparency=int(np.asarray(palette)[0, 0]))
    with Image.open(tmp_path / "p.png") as pil:
        expected = np.asarray(pil.convert("RGBA"))
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), expected)
    assert (expected[..., 3] == 0).any()
    # Colour-key transparency on a gray PNG (tRNS): OpenCV drops it; it becomes alpha.
    Image.fromarray(gray).save(tmp_path / "key.png", transparency=int(gray[0, 0]))
    back = read_image(tmp_path / "key.png")
    np.testing.assert_array_equal(back[..., 0], gray)
    np.testing.assert_array_equal(back[..., 1], np.where(gray == gray[0, 0], 0, 255))


def test_tiffs_that_opencv_misreads(tmp_path: Path) -> None:
    """TIFFs as other software writes them. OpenCV alone would multiply an RGBA file's colour
    by its alpha (unassociated alpha, ExtraSamples = 2: what Pillow, GIMP and Photoshop
    write), drop a palette + alpha file's transparency, and give CMYK an opaque 4th channel."""
    from PIL import Image

    rgba = _random(4, np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.tif")
    with Image.open(tmp_path / "rgba.tif") as pil:
        assert pil.tag_v2.get(338) == (2,), "the file declares unassociated alpha"
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.tif"), rgba)
    palette = Image.fromarray(rgba).convert("P").convert("PA")
    palette.save(tmp_path / "pa.tif")
    np.testing.assert_array_equal(
        read_image(tmp_path / "pa.tif"), np.asarray(palette.convert("RGBA"))
    )
    cmyk = Image.fromarray(_random(3, np.uint8)).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(
        read_image(tmp_path / "cmyk.tif"), np.asarray(cmyk.convert("RGB"))
    )


def test_cmyk_jpeg_becomes_rgb_without_its_cmyk_profile(tmp_path: Path) -> None:
    from PIL import Image

    from srcnn_fast.imagefile import read_image_file

    rgb = _random(3, np.uint8)
    cmyk_profile = bytes(16) + b"CMYK" + bytes(108)  # the header field that says so
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", icc_profile=cmyk_profile)
    image, metadata = read_image_file(tmp_path / "c.jpg")
    assert image.shape == rgb.shape and image.dtype == np.uint8
    assert metadata.icc is None, "a CMYK profile must not describe the RGB output"
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", icc_profile=_profile())
    assert read_image_file(tmp_path / "rgb.jpg")[1].icc == _profile(), "RGB profiles travel"


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp"])
def test_one_bit_images_read_as_8_bit_gray(ext: str, tmp_path: Path) -> None:
    from PIL import Image

    bits = _random(1, np.uint8) > 127
    Image.fromarray(bits).save(tmp_path / f"bits{ext}")
    back = read_image(tmp_path / f"bits{ext}")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, np.where(bits, 255, 0))


@pytest.mark.parametrize(
    "interruption", [OSError(28, "No space left on device"), KeyboardInterrupt]
)
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    interruption: BaseException, tmp_path: Path
) -> None:
    """The disk fills up, or Ctrl-C, half-way through an output that replaces an older one:
    the old file is untouched and no partial or temporary file is left."""
    from srcnn_fast.errors import OutputError
    from srcnn_fast.imagefile import write_image_bands

    target = tmp_path / "out.png"
    target.write_bytes(b"the previous output")
    image = _random(3, np.uint8)

    def bands():
        yield image[:4]
        raise interruption

    expected = OutputError if isinstance(interruption, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        write_image_bands(target, image.shape, image.dtype, bands(), overwrite=True)
    if expected is OutputError:
        assert str(info.value) == f"{target}: cannot write (No space left on device)"
    assert target.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_formats_that_would_lose_data_are_refused(tmp_path: Path) -> None:
    from srcnn_fast.errors import OutputError

    with pytest.raises(OutputError, match=r"x\.jpg: JPEG has no alpha channel"):
        write_image(tmp_path / "x.jpg", _random(4, np.uint8))
    with pytest.raises(OutputError, match=r"x\.webp: WebP holds 8-bit samples only"):
        write_image(tmp_path / "x.webp", _random(3, np.uint16))
    assert not list(tmp_path.iterdir())


# --- metadata --------------------------------------------------------------------------------


@functools.cache
def _profile() -> bytes:  # cached: the profile embeds its creation time
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp"])
def test_icc_exif_and_xmp_are_carried_through_upscale(ext: str, tmp_path: Path) -> None:
    """An upscaled photo keeps its colour profile and camera data; its EXIF orientation is
    applied to the pixels and then reset to 1 (upright)."""
    from PIL import Image

    from srcnn_fast.cli import main
    from srcnn_fast.model import Architecture, SRCNNWeights

    weights = tmp_path / "w.npz"
    SRCNNWeights.random(Architecture(f1=3, n1=4, n2=4, f3=3), scale=2).save(weights)
    exif = Image.Exif()
    exif[0x010F] = "srcnn-fast test camera"
    exif[0x0112] = 6
    source = tmp_path / f"photo{ext}"
    Image.fromarray(_random(3, np.uint8)).save(source, exif=exif, icc_profile=_profile())
    assert main(["upscale", str(source), "-w", str(weights), "-q"]) == 0
    with Image.open(tmp_path / f"photo_x2{ext}") as out:
        assert out.size == (18, 26)  # 9x13 rotated by the orientation, then doubled
        assert out.info.get("icc_profile") == _profile()
        assert out.getexif().get(0x010F) == "srcnn-fast test camera"
        assert out.getexif().get(0x0112) == 1


def test_png_encoder_streams_bands_and_carries_metadata(tmp_path: Path) -> None:
    from srcnn_fast.imagefile import Metadata, read_image_file, write_image_bands

    image = _random(4, np.uint16)
    bands = (image[i : i + 2] for i in range(0, image.shape[0], 2))
    meta = Metadata(exif=None, xmp=b"<x:xmpmeta>srcnn</x:xmpmeta>", icc=_profile())
    write_image_bands(tmp_path / "b.png", image.shape, image.dtype, bands, metadata=meta)
    back, back_meta = read_image_file(tmp_path / "b.png")
    np.testing.assert_array_equal(back, image)
    assert back_meta.icc == meta.icc and back_meta.xmp == meta.xmp
