"""Read and write photos as NumPy arrays, and move them to and from model tensors.

Decoding is Pillow's, except where Pillow would silently drop bits: it reads 16-bit-per-channel
colour PNG and TIFF files as 8-bit, so those are decoded with pypng and tifffile instead.
Arrays are H×W (grayscale), H×W×3 (RGB) or H×W×4 (RGBA), of dtype uint8 or uint16.
Model tensors are float32 RGB, (1, 3, H, W), in [0, 1]; :func:`to_tensor` records what
:func:`from_tensor` needs to give back an array of the original kind (grayscale, alpha, dtype).
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png
import tifffile
import torch
from PIL import Image, ImageOps

from .files import atomic_write

DEFAULT_MAX_PIXELS = 100_000_000

# Output formats by suffix, with whether they can hold 16-bit samples and an alpha channel.
_FORMATS = {
    ".png": ("PNG", True, True),
    ".tif": ("TIFF", True, True),
    ".tiff": ("TIFF", True, True),
    ".jpg": ("JPEG", False, False),
    ".jpeg": ("JPEG", False, False),
    ".webp": ("WEBP", False, True),
    ".bmp": ("BMP", False, False),  # Pillow writes 32-bit BMPs but reads their alpha as padding
}
WRITABLE_SUFFIXES = tuple(_FORMATS)
_LOSSY_QUALITY = 95  # Pillow's default of 75 visibly blurs fine detail that deraining restores

# What each decoder raises on a damaged file; Pillow alone uses five exception types.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    zlib.error,
    png.Error,
    Image.DecompressionBombError,
)

# EXIF orientation tag value -> the array operation that shows the photo upright, for the
# 16-bit decoders (the transforms of Pillow's ImageOps.exif_transpose, used for the rest).
_ORIENTATION = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
_EXIF_ORIENTATION = 0x0112


class ImageReadError(ValueError):
    """A file that cannot be decoded as an image; the message names the path and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def read_image(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, upright: bool = True
) -> np.ndarray:
    """Decode ``path`` into an upright H×W, H×W×3 or H×W×4 uint8/uint16 array.

    ``upright=False`` ignores the EXIF orientation, as MATLAB's ``imread`` does (the paper
    metric protocols read images that way).

    16-bit files stay uint16; palette images become RGB (RGBA if they have transparency);
    CMYK, YCbCr and LAB become RGB; gray+alpha becomes RGBA. Images with more than
    ``max_pixels`` pixels are refused before decoding (decompression bombs); Pillow's own
    limit, ``2 * PIL.Image.MAX_IMAGE_PIXELS``, applies as well.

    Raises:
        ImageReadError: missing, empty, corrupt, truncated or non-image file, too many pixels,
            or a sample format without a uint8/uint16 equivalent (float images).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # The pixel limit below replaces Pillow's warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        path,
                        f"{width}x{height} = {width * height} pixels exceeds the limit of "
                        f"{max_pixels} (possible decompression bomb; raise max_pixels to allow)",
                    )
                if _is_16bit_colour_png(path, img):
                    array = _upright(_read_png_16bit(path), img, upright)
                elif _is_16bit_colour_tiff(img):
                    array = _upright(tifffile.imread(path, key=0), img, upright)
                else:
                    img.load()
                    try:
                        array = array_from_pil(ImageOps.exif_transpose(img) if upright else img)
                    except UnsupportedImageError as err:
                        raise ImageReadError(path, str(err)) from None
    except ImageReadError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not an image file Pillow can identify") from None
    except Image.DecompressionBombError as err:
        raise ImageReadError(path, f"too many pixels, possible decompression bomb ({err})") from None
    except _DECODE_ERRORS as err:
        raise ImageReadError(path, f"corrupt or truncated image ({err})") from None
    return _as_gray_rgb_or_rgba(path, array)


def _upright(array: np.ndarray, img: Image.Image, upright: bool) -> np.ndarray:
    """Apply the EXIF orientation of ``img`` to an array decoded without Pillow."""
    if not upright:
        return array
    transform = _ORIENTATION.get(img.getexif().get(_EXIF_ORIENTATION, 1))
    return np.ascontiguousarray(transform(array)) if transform else array


def _is_16bit_colour_png(path: Path, img: Image.Image) -> bool:
    if img.format != "PNG":
        return False
    with open(path, "rb") as f:
        header = f.read(26)  # signature (8), IHDR length and type (8), width, height, depth, type
    bit_depth, colour_type = header[24], header[25]
    return bit_depth == 16 and colour_type in (2, 4, 6)  # RGB, gray+alpha, RGBA


def _is_16bit_colour_tiff(img: Image.Image) -> bool:
    if img.format != "TIFF":
        return False
    bits = img.tag_v2.get(258, (8,))  # BitsPerSample, one entry per channel
    bits = bits if isinstance(bits, tuple) else (bits,)
    return len(bits) > 1 and all(b == 16 for b in bits)


def _read_png_16bit(path: Path) -> np.ndarray:
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return array.reshape(height, width, info["planes"])


class UnsupportedImageError(ValueError):
    """A decoded image whose sample format has no uint8/uint16 equivalent."""


def array_from_pil(img: Image.Image) -> np.ndarray:
    """The pixels of a Pillow image as an H×W, H×W×3 or H×W×4 uint8/uint16 array.

    Converts as :func:`read_image` does (palette, CMYK and gray+alpha to RGB or RGBA);
    EXIF orientation is not applied here.
    """
    mode = img.mode
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)  # native byte order for big-endian files
    if mode == "I":  # 32-bit integers: what older Pillow returns for 16-bit grayscale
        array = np.asarray(img)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise UnsupportedImageError("32-bit integer samples outside the 16-bit range")
        return array.astype(np.uint16)
    if mode == "F":
        raise UnsupportedImageError("32-bit float images are not supported (uint8/uint16 only)")
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"))
    has_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or (
        mode == "P" and "transparency" in img.info
    )
    return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))


def _as_gray_rgb_or_rgba(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 2:  # gray + alpha from the 16-bit decoders
        gray, alpha = array[:, :, :1], array[:, :, 1:]
        return np.concatenate([gray, gray, gray, alpha], axis=2)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return array
    raise ImageReadError(path, f"unsupported sample layout {array.shape}")


def write_image(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8/uint16 H×W, H×W×3 or H×W×4 array; the suffix picks the format.

    The file is written under a temporary name in the same folder and renamed, so readers
    never see half a file. 16-bit arrays need PNG or TIFF (see :func:`to_uint8`), alpha
    cannot go to JPEG.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(
            f"{path}: unknown image suffix {path.suffix!r}; use one of {', '.join(_FORMATS)}"
        )
    fmt, holds_16bit, holds_alpha = _FORMATS[suffix]
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: expected a uint8 or uint16 array, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"{path}: expected an H×W, H×W×3 or H×W×4 array, got {array.shape}")
    if array.dtype == np.uint16 and not holds_16bit:
        raise ValueError(f"{path}: {fmt} cannot store 16-bit samples; write .png or .tif")
    if array.ndim == 3 and array.shape[2] == 4 and not holds_alpha:
        raise ValueError(f"{path}: {fmt} cannot store an alpha channel; write .png, .tif or .webp")

    array = np.ascontiguousarray(array)
    with atomic_write(path) as tmp:
        if array.dtype == np.uint16 and array.ndim == 3:  # Pillow has no 16-bit colour modes
            if fmt == "PNG":
                _write_png_16bit(tmp, array)
            else:
                tifffile.imwrite(tmp, array, photometric="rgb")
        else:
            options = {
                "JPEG": {"quality": _LOSSY_QUALITY},
                "WEBP": {"quality": _LOSSY_QUALITY, "exact": True},  # keep RGB under alpha 0
            }.get(fmt, {})
            Image.fromarray(array).save(tmp, format=fmt, **options)
    return path


def _write_png_16bit(path: Path, array: np.ndarray) -> None:
    height, width, channels = array.shape
    writer = png.Writer(width, height, greyscale=False, alpha=channels == 4, bitdepth=16)
    with open(path, "wb") as f:
        writer.write(f, array.reshape(height, width * channels))


def fit_to_format(array: np.ndarray, suffix: str) -> np.ndarray:
    """``array`` reduced to what the format of ``suffix`` stores: 8-bit, no alpha if need be."""
    if suffix.lower() not in _FORMATS:
        raise ValueError(f"unknown image suffix {suffix!r}; use one of {', '.join(_FORMATS)}")
    _, holds_16bit, holds_alpha = _FORMATS[suffix.lower()]
    if not holds_16bit:
        array = to_uint8(array)
    if not holds_alpha and array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    return array


def to_uint8(array: np.ndarray) -> np.ndarray:
    """``array`` as uint8, rounding 16-bit samples to the nearest 8-bit level."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.rint(array / 257.0).astype(np.uint8)
    raise ValueError(f"expected a uint8 or uint16 array, got {array.dtype}")


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`to_tensor` took apart, so :func:`from_tensor` can put it back.

    ``dtype`` is the original sample type; ``grayscale`` means the tensor's three channels
    are copies of one; ``alpha`` is the untouched alpha channel, or ``None``.
    """

    dtype: np.dtype
    grayscale: bool
    alpha: np.ndarray | None = None


def _scale(dtype: np.dtype) -> float:
    """The sample value that maps to 1.0: 255 for uint8, 65535 for uint16, 1 for floats."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def to_tensor(array: np.ndarray) -> tuple[torch.Tensor, ImageInfo]:
    """Turn an image array into a float32 RGB tensor (1, 3, H, W) in [0, 1].

    Accepts uint8, uint16 or float arrays (floats taken as already in [0, 1]) shaped H×W,
    H×W×1, H×W×3 or H×W×4. Grayscale is repeated over three channels and alpha is set aside
    in the returned :class:`ImageInfo`.
    """
    if array.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise ValueError(f"expected a uint8, uint16 or float image array, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"expected an H×W, H×W×3 or H×W×4 image array, got {array.shape}")
    alpha = array[:, :, 3].copy() if array.ndim == 3 and array.shape[2] == 4 else None
    grayscale = array.ndim == 2
    rgb = np.repeat(array[:, :, None], 3, axis=2) if grayscale else array[:, :, :3]
    tensor = torch.from_numpy(rgb.astype(np.float32) / _scale(array.dtype))
    info = ImageInfo(dtype=array.dtype, grayscale=grayscale, alpha=alpha)
    return tensor.permute(2, 0, 1).unsqueeze(0).contiguous(), info


def from_tensor(tensor: torch.Tensor, info: ImageInfo) -> np.ndarray:
    """Turn a model output (1, 3, H, W) or (3, H, W) back into an array like the input.

    Values are clamped to [0, 1] and rounded to the original integer type; grayscale inputs
    get the mean of the three output channels; the saved alpha channel is appended.
    """
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected a single image (1, 3, H, W), got {tuple(tensor.shape)}")
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected an RGB tensor (3, H, W), got {tuple(tensor.shape)}")
    image = tensor.detach().float().clamp(0, 1).cpu()
    image = image.mean(0) if info.grayscale else image.permute(1, 2, 0)
    array = image.numpy()
    if np.issubdtype(info.dtype, np.integer):
        array = np.rint(array * _scale(info.dtype)).astype(info.dtype)
    else:
        array = array.astype(info.dtype)
    if info.alpha is not None:
        if info.alpha.shape != array.shape[:2]:
            raise ValueError(
                f"alpha channel {info.alpha.shape} does not match the image {array.shape[:2]}"
            )
        array = np.concatenate([array, info.alpha[:, :, None].astype(array.dtype)], axis=2)
    return array
