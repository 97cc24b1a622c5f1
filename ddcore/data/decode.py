"""Image files to tensors with the pixel values and orientation the file means, or one error naming the file.

:func:`decode_image` is the one place ddcore turns an image file into pixels; ``imagefolder`` uses it,
and so should any plugin that reads image files (``from ddcore.data.decode import decode_image``).
Every value comes out as float32 in ``[0, 1]``, whatever the file stores:

====================  ===========================================================================
Pillow mode           what reaches the network
====================  ===========================================================================
``1``                 0 or 1.
``L``                 value / 255.
``I;16`` ``I;16B``    value / 65535 (16-bit grey PNG, TIFF, PGM): all 16 bits kept, never clipped
``I;16L`` ``I;16N``   at 255 as Pillow's own ``convert("L")`` would do.
``I``                 (32-bit integer; Pillow also opens 16-bit PGM this way) value / 65535 when
                      every value lies in 0..65535; any other value refuses the file, since 32-bit
                      integers have no agreed brightness scale.
``F``                 (float TIFF) used as is when every value is finite and in ``[0, 1]`` (the
                      usual convention for float images); otherwise the file is refused.
``RGB``               value / 255. A 16-bit-per-channel RGB(A) PNG or TIFF is opened by Pillow as
                      8-bit ``RGB``/``RGBA`` holding the high byte of each sample: 8-bit precision,
                      the value truncated (error below 1/255); grey 16-bit keeps all 16 bits.
``CMYK``              through its ICC profile when it has one (below), else Pillow's
                      ``R = (255 - C)(255 - K) / 255`` conversion (Adobe's inverted CMYK JPEGs are
                      un-inverted by Pillow).
``YCbCr``             Pillow's ITU-R BT.601 conversion to RGB.
``P`` ``PA``          the palette's colours; palette transparency becomes alpha (below), as does
                      the single transparent grey or colour of a ``1``/``L``/``RGB`` PNG (tRNS).
``LA`` ``RGBA``       composited on :data:`ALPHA_BACKGROUND` (white) by their alpha:
``La`` ``RGBa``       ``value * alpha + 1 * (1 - alpha)``, so fully transparent pixels read as white,
                      whatever colour the file keeps under them (what a viewer on a white page shows).
====================  ===========================================================================

Other modes (``LAB``, ``HSV``, ...) refuse the file. Also:

- **Orientation**: the EXIF orientation tag (values 1-8) is applied with
  :func:`PIL.ImageOps.exif_transpose`, so the pixels are upright as a viewer shows them; other values
  are read as 1 (as stored).
- **Several frames** (animated GIF/PNG/WebP, multi-page TIFF): the first frame only.
- **ICC profiles**: an 8-bit RGB, RGBA or CMYK image whose embedded profile is not sRGB (its description
  does not name sRGB) is converted to sRGB with LittleCMS (:mod:`PIL.ImageCms`, relative colorimetric
  intent; alpha kept). Profiles on grey, 16-bit and float images, and profiles LittleCMS cannot read,
  are ignored: those values are used as stored (read as sRGB, as browsers do with untagged images).
- **Channels**: the caller asks for 1 or 3. A grey image asked as 3 channels repeats its one channel;
  a colour image asked as 1 channel becomes ITU-R 601-2 luma (``0.299 R + 0.587 G + 0.114 B``,
  Pillow's ``convert("L")`` weights). :func:`survey` says which a set of files needs.
- **Unreadable files** (not an image, truncated, corrupt data, a decompression bomb, an unsupported or
  out-of-range mode): :class:`ImageReadError`, a :class:`~ddcore.errors.ConfigError` whose one-line
  message names the file. A truncated file is only detected when its pixels are decoded (Pillow reads
  headers on open), i.e. when that image is first loaded. Raised inside a DataLoader worker process,
  it still reaches the user as the same one line (see :class:`ImageReadError`).

:data:`DECODE_VERSION` changes whenever these rules change the pixels of some file; caches of decoded
pixels should put it in their key.
"""

from __future__ import annotations

import functools
import io
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps

from ddcore.errors import ConfigError

#: Bump when a rule above changes the decoded pixels of some file (caches of pixels key on it).
DECODE_VERSION = 2

#: The value transparent pixels are composited onto, in [0, 1] (white).
ALPHA_BACKGROUND = 1.0

#: Pillow modes that hold one grey channel (plus alpha for ``LA``/``La``).
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

#: Pillow modes :func:`decode_image` reads; any other mode refuses the file.
SUPPORTED_MODES = GREY_MODES | {"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}

#: Weights of R, G, B in the luma of a colour image read as one channel (ITU-R 601-2, as Pillow).
LUMA = (0.299, 0.587, 0.114)

#: Files :func:`survey` opens at most (evenly spaced over the list) to decide channels and sizes.
SURVEY_LIMIT = 1000

_SIXTEEN_BIT = 65535.0
_FIX = "fix, convert or remove the file"


class ImageReadError(ConfigError):
    """An image file that cannot be decoded faithfully; the one-line message names its path.

    A DataLoader worker's error reaches the main process rebuilt from a message that embeds the
    worker's traceback; only its last line (this error's own message) is kept, so it stays one line.
    """

    def __init__(self, message: str):
        if "\n" in message:
            last = message.rstrip().rsplit("\n", 1)[-1]
            prefix = f"{type(self).__module__}.{type(self).__qualname__}: "
            message = last.removeprefix(prefix)
        super().__init__(message)


def _refuse(path: str, why: str) -> ImageReadError:
    return ImageReadError(f"cannot read image {path}: {why} ({_FIX})")


# Pillow's ways of saying a file is not a readable image (a truncated file: OSError "image file is truncated";
# malformed headers also surface as struct.error, IndexError, KeyError, TypeError or ZeroDivisionError).
_PIL_ERRORS = (
    OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
    struct.error, IndexError, KeyError, TypeError, ZeroDivisionError,
)  # fmt: skip


@dataclass(frozen=True)
class Survey:
    """What the headers of some image files say (:func:`survey`).

    Attributes:
        channels: 1 when every file read is grey (:data:`GREY_MODES`), else 3.
        sizes: ``Counter`` of ``(width, height)`` as stored (before EXIF orientation) over the files read.
        read: how many files were opened; ``total``: how many were given.
    """

    channels: int
    sizes: Counter
    read: int
    total: int

    @property
    def shorter_sides(self) -> Counter:
        """``Counter`` of ``min(width, height)`` over the files read (orientation does not change it)."""
        sides: Counter = Counter()
        for (width, height), count in self.sizes.items():
            sides[min(width, height)] += count
        return sides


def evenly_spaced(items: Sequence, limit: int) -> list:
    """At most ``limit`` items of ``items`` at evenly spaced positions, first and last included, in order.

    >>> evenly_spaced(list(range(10)), 4), evenly_spaced([1, 2], 5)
    ([0, 3, 6, 9], [1, 2])
    """
    n = len(items)
    if n <= limit:
        return list(items)
    if limit == 1:
        return [items[0]]
    return [items[(i * (n - 1)) // (limit - 1)] for i in range(limit)]


def survey(paths: Sequence[str], limit: int | None = None) -> Survey:
    """Open the headers of up to ``limit`` (default :data:`SURVEY_LIMIT`) of ``paths`` and summarise.

    The files opened are :func:`evenly_spaced` over ``paths`` (deterministic: same list, same files).
    Reads only headers (Pillow decodes pixels lazily): about 0.1-0.5 ms a file on a local disk.
    Raises :class:`ImageReadError` naming the first file whose header cannot be read.
    """
    chosen = evenly_spaced(list(paths), SURVEY_LIMIT if limit is None else limit)
    sizes: Counter = Counter()
    grey = True
    for path in chosen:
        try:
            with Image.open(path) as image:
                sizes[image.size] += 1
                grey = grey and image.mode in GREY_MODES
        except _PIL_ERRORS as exc:
            raise _refuse(path, _reason(exc)) from None
    return Survey(channels=1 if grey else 3, sizes=sizes, read=len(chosen), total=len(paths))


def decode_image(path: str, channels: int = 3, min_size: int | None = None) -> torch.Tensor:
    """Decode ``path`` by the rules of this module: ``[channels, H, W]`` float32 in ``[0, 1]``, upright.

    ``channels`` is 1 or 3. ``H, W`` are the file's size after orientation, except that a JPEG may be
    decoded at a reduced scale (1/2, 1/4, 1/8) that keeps both sides at least ``min_size`` when given.
    Raises :class:`ImageReadError` (a :class:`ConfigError`) naming ``path`` when the file cannot be
    decoded faithfully.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    try:
        with Image.open(path) as image:
            if min_size:
                image.draft(None, (min_size, min_size))  # JPEG only: DCT scaling, never below min_size
            image.load()  # the first frame; a truncated file raises here
            if image.mode not in SUPPORTED_MODES:
                raise _refuse(path, f"Pillow mode {image.mode} is not supported; save it as RGB or grey")
            upright = ImageOps.exif_transpose(image)
            pixels = _to_array(upright, path)
    except _PIL_ERRORS as exc:
        raise _refuse(path, _reason(exc)) from None
    pixels = _composite(pixels)  # [H, W, 1 or 3]
    if channels == 1 and pixels.shape[2] == 3:
        pixels = pixels @ np.asarray(LUMA, dtype=np.float32)[:, None]
    tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
    return tensor.expand(channels, -1, -1).contiguous() if tensor.shape[0] != channels else tensor


def decode_rgb8(path: str, min_size: int | None = None) -> torch.Tensor:
    """:func:`decode_image` as 3 channels, rounded to uint8: ``[3, H, W]`` uint8 (for 8-bit pixel caches)."""
    return decode_image(path, 3, min_size).mul_(255).round_().to(torch.uint8)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _to_array(image: Image.Image, path: str) -> np.ndarray:
    """``image`` as ``[H, W, C]`` float32 in [0, 1], C = 1 (grey), 2 (grey, alpha), 3 or 4 (RGB, alpha)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return (np.asarray(image).astype(np.float32) / _SIXTEEN_BIT)[..., None]
    if mode == "I":
        values = np.asarray(image)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > _SIXTEEN_BIT:
            raise _refuse(path, f"32-bit integer pixels range {low}..{high}, beyond the 16-bit 0..65535 scaled to 0..1")
        return (values.astype(np.float32) / _SIXTEEN_BIT)[..., None]
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise _refuse(path, "float pixels include NaN or infinity")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise _refuse(path, f"float pixels range {low:g}..{high:g}, outside 0..1")
        return values[..., None].copy()
    if mode in ("1", "L", "RGB", "P") and "transparency" in image.info:  # PNG tRNS / GIF transparent index
        image = image.convert("RGBA" if mode in ("RGB", "P") else "LA")
    elif mode == "P":
        image = image.convert("RGB")
    elif mode in ("PA", "RGBa"):
        image = image.convert("RGBA")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("YCbCr", "RGBX"):
        image = image.convert("RGB")
    if image.mode in ("RGB", "RGBA", "CMYK"):
        image = _to_srgb(image)
    if image.mode == "CMYK":
        image = image.convert("RGB")
    values = np.asarray(image, dtype=np.uint8).astype(np.float32) / 255.0
    return values if values.ndim == 3 else values[..., None]


def _composite(pixels: np.ndarray) -> np.ndarray:
    """Drop alpha by compositing on :data:`ALPHA_BACKGROUND`: ``[H, W, C]`` -> ``[H, W, 1 or 3]``."""
    if pixels.shape[2] not in (2, 4):
        return pixels
    colour, alpha = pixels[..., :-1], pixels[..., -1:]
    return colour * alpha + ALPHA_BACKGROUND * (1.0 - alpha)


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert an RGB/RGBA/CMYK image from its embedded ICC profile to sRGB (RGB/RGBA out); else as is."""
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    transform = _srgb_transform(bytes(icc), "RGB" if image.mode == "RGBA" else image.mode)
    if transform is None:
        return image
    if image.mode == "RGBA":
        converted = transform.apply(image.convert("RGB"))
        converted.putalpha(image.getchannel("A"))
        return converted
    return transform.apply(image)


@functools.lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The LittleCMS transform ``icc`` -> sRGB for ``mode`` input, or None (sRGB already, or unreadable).

    Memoised per process: building one costs ~10 ms, and a dataset's images usually share a profile.
    """
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(source).lower().replace(" ", ""):
            return None
        return ImageCms.buildTransform(
            source, ImageCms.createProfile("sRGB"), mode, "RGB", ImageCms.Intent.RELATIVE_COLORIMETRIC
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
