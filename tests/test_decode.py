"""Image decoding fidelity (:mod:`ddcore.data.decode`) and ``imagefolder``'s own size and channels.

Every file is built with Pillow (or by hand) in ``tmp_path`` with known pixel values; the expected
values come from the file formats' definitions, not from the code under test.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from ddcore.data.base import DatasetOptions
from ddcore.data.decode import ALPHA_BACKGROUND, ImageReadError, decode_image, decode_rgb8, evenly_spaced, survey
from ddcore.data.imagefolder import GREY_MEAN, GREY_STD, IMAGENET_MEAN, IMAGENET_STD, load_imagefolder
from ddcore.errors import ConfigError

WHITE = ALPHA_BACKGROUND


def decoded(path: Path, channels: int = 3) -> np.ndarray:
    """``decode_image`` as ``[H, W, C]`` float64 (easier to index like the arrays the files were made from)."""
    pixels = decode_image(str(path), channels)
    assert pixels.dtype == torch.float32 and pixels.shape[0] == channels
    return pixels.permute(1, 2, 0).double().numpy()


def refused(path: Path, *fragments: str) -> str:
    with pytest.raises(ImageReadError) as err:
        decode_image(str(path))
    message = str(err.value)
    assert message.startswith(f"cannot read image {path}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ----------------------------------------------------------------------------------------------
# One test per mode, known values
# ----------------------------------------------------------------------------------------------


def test_mode_1_bilevel(tmp_path: Path) -> None:
    bits = np.array([[1, 0, 1], [0, 0, 1]], dtype=bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    np.testing.assert_array_equal(decoded(tmp_path / "b.png", 1)[..., 0], bits.astype(float))


def test_mode_l_is_value_over_255(tmp_path: Path) -> None:
    grey = np.array([[0, 51, 255]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_allclose(decoded(tmp_path / "g.png", 1)[..., 0], [[0, 0.2, 1]], atol=1e-6)
    rgb = decoded(tmp_path / "g.png", 3)  # a grey image read as RGB repeats its channel
    np.testing.assert_allclose(rgb, np.repeat(rgb[..., :1], 3, axis=2), atol=0)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_mode_i16_keeps_all_16_bits(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"g16{suffix}")
    assert Image.open(tmp_path / f"g16{suffix}").mode == "I;16"
    got = decoded(tmp_path / f"g16{suffix}", 1)[0, :, 0]
    np.testing.assert_allclose(got, [0, 32768 / 65535, 1.0, 1000 / 65535], atol=1e-7)  # not clipped at 255


def test_mode_i16b_big_endian_tiff(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes()).save(tmp_path / "g.tif")
    assert Image.open(tmp_path / "g.tif").mode == "I;16B"
    np.testing.assert_allclose(decoded(tmp_path / "g.tif", 1)[0, :, 0], [0, 32768 / 65535, 1.0], atol=1e-7)


def test_mode_i_16_bit_pgm_and_32_bit_tiff(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g.pgm")  # a scanner's 16-bit PGM: Pillow opens it as mode I
    assert Image.open(tmp_path / "g.pgm").mode == "I"
    np.testing.assert_allclose(decoded(tmp_path / "g.pgm", 1)[0, :, 0], [0, 32768 / 65535, 1.0], atol=1e-7)
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_allclose(decoded(tmp_path / "i.tif", 1)[0, :, 0], [0, 32768 / 65535, 1.0], atol=1e-7)
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(tmp_path / "big.tif")
    refused(tmp_path / "big.tif", "0..70000", "16-bit")
    Image.fromarray(np.array([[-5, 10]], dtype=np.int32)).save(tmp_path / "neg.tif")
    refused(tmp_path / "neg.tif", "-5..10")


def test_mode_f_float_tiff(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0.0, 0.25, 1.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    np.testing.assert_allclose(decoded(tmp_path / "f.tif", 1)[0, :, 0], [0, 0.25, 1.0], atol=0)
    Image.fromarray(np.array([[0.0, 2.5]], dtype=np.float32)).save(tmp_path / "hdr.tif")
    refused(tmp_path / "hdr.tif", "outside 0..1", "2.5")
    Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32)).save(tmp_path / "nan.tif")
    refused(tmp_path / "nan.tif", "NaN")


def test_mode_rgb(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 128, 255]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_allclose(decoded(tmp_path / "c.png"), rgb / 255, atol=1e-6)
    luma = decoded(tmp_path / "c.png", 1)[0, :, 0]  # ITU-R 601-2, as Pillow's convert("L")
    np.testing.assert_allclose(luma, [0.299, (0.587 * 128 + 0.114 * 255) / 255], atol=1e-6)


def png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """Write ``rgb`` ``[H, W, 3]`` uint16 as a 16-bit-per-channel RGB PNG (by hand: Pillow cannot write one)."""
    height, width, _ = rgb.shape
    rows = b"".join(b"\0" + rgb[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_16_bit_rgb_png_keeps_8_bit_precision(tmp_path: Path) -> None:
    rgb = np.array([[[65535, 32768, 0], [255, 256, 40000]]], dtype=np.uint16)
    png16_rgb(tmp_path / "c16.png", rgb)
    got = decoded(tmp_path / "c16.png")
    # Pillow keeps the high byte (documented): within 1/255 of the 16-bit value, never above it
    assert np.all(np.abs(got - rgb / 65535) < 1 / 255)
    np.testing.assert_allclose(got[0, 0], [1.0, 128 / 255, 0.0], atol=1e-6)


def test_mode_cmyk_tiff_and_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(tmp_path / "red.tif")  # magenta + yellow = pure red
    Image.new("CMYK", (2, 2), (0, 0, 0, 255)).save(tmp_path / "black.tif")
    Image.new("CMYK", (2, 2), (0, 0, 0, 0)).save(tmp_path / "white.tif")
    np.testing.assert_allclose(decoded(tmp_path / "red.tif")[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(decoded(tmp_path / "black.tif")[0, 0], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(decoded(tmp_path / "white.tif")[0, 0], [1, 1, 1], atol=1e-6)
    Image.new("CMYK", (16, 16), (255, 0, 255, 0)).save(tmp_path / "green.jpg", quality=100)
    assert Image.open(tmp_path / "green.jpg").mode == "CMYK"
    np.testing.assert_allclose(decoded(tmp_path / "green.jpg")[8, 8], [0, 1, 0], atol=2 / 255)


def test_mode_ycbcr_tiff(tmp_path: Path) -> None:
    Image.new("YCbCr", (2, 2), (255, 128, 128)).save(tmp_path / "white.tif")
    Image.new("YCbCr", (2, 2), (76, 85, 255)).save(tmp_path / "red.tif")  # BT.601 red: Y 76, Cb 85, Cr 255
    assert Image.open(tmp_path / "white.tif").mode == "YCbCr"
    np.testing.assert_allclose(decoded(tmp_path / "white.tif")[0, 0], [1, 1, 1], atol=1 / 255)
    np.testing.assert_allclose(decoded(tmp_path / "red.tif")[0, 0], [1, 0, 0], atol=2 / 255)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 51]]], dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "c.png")
    got = decoded(tmp_path / "c.png")
    np.testing.assert_allclose(got[0, 0], [1, 0, 0], atol=1e-6)  # opaque: as stored
    np.testing.assert_allclose(got[0, 1], [WHITE] * 3, atol=1e-6)  # transparent: the background, not the red under it
    np.testing.assert_allclose(got[0, 2], [0.8, 0.8, 1.0], atol=1e-6)  # 20% blue over white
    la = np.array([[[0, 255], [0, 0], [100, 102]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "g.png")
    got = decoded(tmp_path / "g.png", 1)[0, :, 0]
    np.testing.assert_allclose(got, [0.0, WHITE, 100 / 255 * 0.4 + WHITE * 0.6], atol=1e-6)


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 1, 2]], dtype=np.uint8), "P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    image.save(tmp_path / "p.png")
    image.save(tmp_path / "pt.png", transparency=0)  # index 0 (red) is fully transparent
    image.save(tmp_path / "pt.gif", transparency=0)
    np.testing.assert_allclose(decoded(tmp_path / "p.png")[0], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], atol=1e-6)
    for name in ("pt.png", "pt.gif"):
        assert Image.open(tmp_path / name).mode == "P" and "transparency" in Image.open(tmp_path / name).info
        np.testing.assert_allclose(decoded(tmp_path / name)[0], [[WHITE] * 3, [0, 1, 0], [0, 0, 1]], atol=1e-6)


def test_a_transparent_colour_of_an_rgb_or_grey_png(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png", transparency=(255, 0, 0))  # red is the transparent colour
    np.testing.assert_allclose(decoded(tmp_path / "c.png")[0], [[WHITE] * 3, [0, 0, 1]], atol=1e-6)
    Image.fromarray(np.array([[0, 100]], dtype=np.uint8)).save(tmp_path / "g.png", transparency=0)
    np.testing.assert_allclose(decoded(tmp_path / "g.png", 1)[0, :, 0], [WHITE, 100 / 255], atol=1e-6)


def test_mode_pa_tiff(tmp_path: Path) -> None:
    image = Image.new("PA", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.putpixel((0, 0), (1, 255))  # blue, opaque
    image.putpixel((1, 0), (0, 0))  # red, transparent
    image.save(tmp_path / "pa.tif")
    assert Image.open(tmp_path / "pa.tif").mode == "PA"
    np.testing.assert_allclose(decoded(tmp_path / "pa.tif")[0], [[0, 0, 1], [WHITE] * 3], atol=1e-6)


def test_an_unsupported_mode_is_refused(tmp_path: Path) -> None:
    Image.new("LAB", (2, 2), (50, 0, 0)).save(tmp_path / "lab.tif")
    refused(tmp_path / "lab.tif", "mode LAB is not supported")


# ----------------------------------------------------------------------------------------------
# Orientation, frames, ICC profiles
# ----------------------------------------------------------------------------------------------

# The stored image S for each EXIF orientation, given the upright image U (EXIF 2.3, tag 0x0112: where
# row 0 and column 0 of S are in U): 6 = "row 0 is the right side, column 0 the top" -> S = rot90(U) ...
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],
    3: lambda u: u[::-1, ::-1],
    4: lambda u: u[::-1, :],
    5: lambda u: u.T,
    6: lambda u: np.rot90(u, 1),
    7: lambda u: np.rot90(u, 2).T,
    8: lambda u: np.rot90(u, -1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path: Path, orientation: int) -> None:
    upright = (np.arange(12, dtype=np.uint8) * 20).reshape(3, 4)  # every pixel distinct, 3 high, 4 wide
    stored = np.ascontiguousarray(STORED[orientation](upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "o.png", exif=exif)
    np.testing.assert_allclose(decoded(tmp_path / "o.png", 1)[..., 0], upright / 255, atol=1e-6)


def test_exif_orientation_of_a_camera_jpeg(tmp_path: Path) -> None:
    upright = np.zeros((16, 32, 3), dtype=np.uint8)  # 16 high, 32 wide, red top-left corner
    upright[:8, :8] = (255, 0, 0)
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # as a camera held upright writes orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif, quality=100)
    got = decoded(tmp_path / "photo.jpg")
    assert got.shape == (16, 32, 3)
    np.testing.assert_allclose(got[2, 2], [1, 0, 0], atol=0.05)
    np.testing.assert_allclose(got[13, 29], [0, 0, 0], atol=0.05)


def test_first_frame_of_an_animated_gif_and_a_multipage_tiff(tmp_path: Path) -> None:
    frames = [Image.new("P", (4, 4), index) for index in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(tmp_path / "a.gif").n_frames == 2
    np.testing.assert_allclose(decoded(tmp_path / "a.gif")[0, 0], [1, 0, 0], atol=1e-6)  # frame 0 is red
    Image.new("L", (4, 4), 10).save(tmp_path / "pages.tif", save_all=True, append_images=[Image.new("L", (4, 4), 200)])
    np.testing.assert_allclose(decoded(tmp_path / "pages.tif", 1)[0, 0], [10 / 255], atol=1e-6)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def swapped_rg_profile() -> bytes:
    """A minimal ICC v2 RGB display profile: sRGB's primaries with red and green swapped, linear curves.

    Under it, stored (1, 0, 0) *is* sRGB's green and (0, 1, 0) sRGB's red (D50 colorants of sRGB).
    """
    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)

    name = b"swapped red and green\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    linear = b"curv\0\0\0\0" + struct.pack(">I", 0)
    tags = [
        (b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"gXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", linear), (b"gTRC", linear), (b"bTRC", linear),
    ]  # fmt: skip
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size) + b"\0" * 4 + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp"
        + b"\0" * 24 + b"\0" * 4 + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48
    )  # fmt: skip
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def test_icc_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    icc = swapped_rg_profile()
    ImageCms.ImageCmsProfile(__import__("io").BytesIO(icc))  # a valid profile for LittleCMS
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "tagged.png", icc_profile=icc)
    Image.fromarray(rgb).save(tmp_path / "tagged.jpg", icc_profile=icc, quality=100)
    expected = [[0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]]  # red and green trade places, grey stays
    np.testing.assert_allclose(decoded(tmp_path / "tagged.png")[0], expected, atol=2 / 255)
    rgba = np.concatenate([rgb, np.array([[[255], [255], [255], [0]]], dtype=np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "tagged-alpha.png", icc_profile=icc)
    got = decoded(tmp_path / "tagged-alpha.png")[0]
    np.testing.assert_allclose(got[:3], expected[:3], atol=2 / 255)
    np.testing.assert_allclose(got[3], [WHITE] * 3, atol=1e-6)  # alpha kept through the conversion


def test_an_srgb_or_unreadable_profile_leaves_the_values(tmp_path: Path) -> None:
    rgb = np.array([[[200, 10, 30], [5, 250, 128]]], dtype=np.uint8)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(tmp_path / "srgb.png", icc_profile=srgb)
    Image.fromarray(rgb).save(tmp_path / "junk.png", icc_profile=b"not a profile")
    for name in ("srgb.png", "junk.png"):
        np.testing.assert_allclose(decoded(tmp_path / name), rgb / 255, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Unreadable files
# ----------------------------------------------------------------------------------------------


def truncated(path: Path, fmt: str) -> Path:
    """A 64x64 noise image in ``fmt`` cut in half: the header opens, the pixels do not decode."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused_naming_the_file(tmp_path: Path, fmt: str) -> None:
    path = truncated(tmp_path / f"cut.{fmt.lower()}", fmt)
    with Image.open(path) as header:  # the header still reads: only decoding finds the damage
        assert header.size == (64, 64)
    refused(path)
    with pytest.raises(ImageReadError, match="cannot read image"):
        decode_rgb8(str(path))


def test_not_an_image_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"certainly not a PNG")
    refused(tmp_path / "x.png", "x.png")
    with pytest.raises(ImageReadError, match="x.png"):
        survey([str(tmp_path / "x.png")])


def test_a_truncated_image_fails_the_run_with_one_line(cli, tiny_run_args, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split in ("train", "val"):
        for name, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (64, 64), colour).save(root / split / name / "a.png")
    (root / "train" / "dog" / "a.png").unlink()
    bad = truncated(root / "train" / "dog" / "b.jpg", "JPEG")  # dog's only training image: --ipc 1 loads it
    args = tiny_run_args("--dataset", "imagefolder", "--data-root", root, "--workers", 2)
    code, _, err = cli(*args)
    assert code == 2 and "Traceback" not in err and "DataLoader" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("Error")]  # other lines: progress
    assert len(errors) == 1 and errors[0].startswith(f"Error: cannot read image {bad}: "), err
    assert not (tmp_path / "run" / "distilled.pt").exists()


# ----------------------------------------------------------------------------------------------
# What a set of files decides: channels, the files' own size
# ----------------------------------------------------------------------------------------------


def make_tree(root: Path, sizes: dict[str, tuple[int, int]], mode: str = "RGB") -> Path:
    """root/{train,val}/{a,b}/ with one image per (file name -> size); class a dark, class b bright."""
    for split in ("train", "val"):
        for label, name in enumerate(("a", "b")):
            (root / split / name).mkdir(parents=True)
            for file, size in sizes.items():
                Image.new(mode, size, 40 + 150 * label if mode != "RGB" else (40 + 150 * label, 0, 0)).save(
                    root / split / name / file
                )
    return root


def test_evenly_spaced_sample() -> None:
    assert evenly_spaced(list(range(10)), 4) == [0, 3, 6, 9]
    assert evenly_spaced(list(range(3)), 10) == [0, 1, 2]
    assert evenly_spaced(list(range(1001)), 1000)[-1] == 1000


def test_own_size_is_the_files_size(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"x.png": (20, 20), "y.jpg": (20, 20)})
    ds = load_imagefolder(DatasetOptions(root=root))
    assert ds.image_shape == (3, 20, 20)
    assert ds.extra["image_size_from"] == "files" and ds.extra["headers_read"] == 8
    assert "RGB 20x20 (the files' own size" in ds.description
    image, label = ds.train[0]  # a/x.png, (40, 0, 0), not resampled
    assert image.shape == (3, 20, 20) and label == 0
    expected = (torch.tensor([40 / 255, 0, 0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(image, expected.view(3, 1, 1).expand(3, 20, 20), atol=1e-6)


def test_headers_read_are_capped_by_an_evenly_spaced_sample(tmp_path: Path, monkeypatch) -> None:
    import ddcore.data.decode

    root = make_tree(tmp_path / "data", {"x.png": (20, 20), "y.png": (20, 20)})
    monkeypatch.setattr(ddcore.data.decode, "SURVEY_LIMIT", 3)
    ds = load_imagefolder(DatasetOptions(root=root))
    assert ds.extra["headers_read"] == 3 and "3 evenly spaced of 8 images" in ds.description
    assert survey(ds.train.paths + ds.test.paths, limit=5).read == 5


def test_own_size_with_non_square_images_is_the_shorter_side(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"wide.png": (30, 20), "tall.png": (20, 26), "sq.png": (20, 20)})
    ds = load_imagefolder(DatasetOptions(root=root, image_size=0))
    assert ds.image_shape == (3, 20, 20)
    assert all(ds.train[i][0].shape == (3, 20, 20) for i in range(len(ds.train)))


def test_differing_sizes_are_refused_with_the_most_common(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"p.png": (32, 32), "q.png": (32, 40), "r.png": (64, 48)})
    with pytest.raises(ConfigError) as err:
        load_imagefolder(DatasetOptions(root=root))
    message = str(err.value)
    assert "differ in size" in message and "32 px in 8, 48 px in 4 of the 12 files read" in message
    assert "--image-size" in message and "\n" not in message
    ds = load_imagefolder(DatasetOptions(root=root, image_size=24))  # with a size given, it loads
    assert ds.image_shape == (3, 24, 24) and ds.train[2][0].shape == (3, 24, 24)


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_a_grey_dataset_has_one_channel(tmp_path: Path, mode: str) -> None:
    root = make_tree(tmp_path / "data", {"x.png": (12, 12)}, mode=mode)
    ds = load_imagefolder(DatasetOptions(root=root))
    assert ds.image_shape == (1, 12, 12) and ds.mean == GREY_MEAN and ds.std == GREY_STD
    assert "grey 12x12" in ds.description
    scale = 255 if mode == "L" else 65535
    images, labels = ds.load("train", [0, 1])
    assert images.shape == (2, 1, 12, 12) and labels.tolist() == [0, 1]
    expected = (torch.tensor([40.0, 190.0]) / scale - GREY_MEAN[0]) / GREY_STD[0]
    assert torch.allclose(images.mean(dim=(1, 2, 3)), expected, atol=1e-6)


def test_one_colour_file_makes_the_dataset_rgb(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"x.png": (12, 12)}, mode="L")
    Image.new("RGB", (12, 12), (0, 255, 0)).save(root / "train" / "b" / "y.png")
    ds = load_imagefolder(DatasetOptions(root=root))
    assert ds.image_shape == (3, 12, 12) and ds.mean == IMAGENET_MEAN
    grey = ds.denormalize(ds.train[0][0][None])[0]  # a grey image in an RGB dataset: R = G = B
    assert torch.allclose(grey, torch.full((3, 12, 12), 40 / 255), atol=1e-6)


def test_tiff_gif_and_netpbm_files_are_listed_and_decoded(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"a.tif": (8, 8), "b.GIF": (8, 8), "c.ppm": (8, 8), "d.TIFF": (8, 8)})
    ds = load_imagefolder(DatasetOptions(root=root))
    assert [Path(p).name for p in ds.train.paths[:4]] == ["a.tif", "b.GIF", "c.ppm", "d.TIFF"]
    images, _ = ds.load("train", range(4))
    expected = (torch.tensor([40 / 255, 0, 0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(images.mean(dim=(2, 3)), expected.expand(4, 3), atol=1e-6)
