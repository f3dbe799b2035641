"""Read and write photos as NumPy arrays, and move them to and from model tensors.

Decoding is Pillow's, limited to the formats derain documents (:data:`READ_FORMATS`): Pillow
otherwise picks a plugin by content whatever the suffix, and some (EPS) start external programs.
Where Pillow would silently drop bits (16-bit-per-channel colour PNG and TIFF, which it reads as
8-bit) pypng and tifffile decode instead; tifffile reads compressed TIFFs through imagecodecs.
Arrays are H×W (grayscale), H×W×3 (RGB) or H×W×4 (RGBA), of dtype uint8 or uint16.
Model tensors are float32 RGB, (1, 3, H, W), in [0, 1]; :func:`to_tensor` records what
:func:`from_tensor` needs to give back an array of the original kind (grayscale, alpha, dtype).
"""

from __future__ import annotations

import math
import os
import warnings
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

# The only Pillow plugins that ever see an input file: the formats derain documents.
READ_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")
# SOF markers of Huffman-coded JPEGs (baseline, extended, progressive): every 8x8 block costs at
# least one bit of entropy-coded data, so fewer bytes than blocks / 8 means the data ended early.
_HUFFMAN_SOF = (0xC0, 0xC1, 0xC2)
_TIFF_PHOTOMETRIC_SEPARATED, _TIFF_INKSET_CMYK, _TIFF_PLANAR_SEPARATE = 5, 1, 2

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
            with Image.open(path, formats=READ_FORMATS) as img:
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
                    array = _upright(_read_tiff_16bit(path), img, upright)
                else:
                    if img.format in ("JPEG", "MPO"):  # MPO: multi-picture JPEG from cameras
                        _check_jpeg_data_length(path, img)
                    img.load()
                    try:
                        array = array_from_pil(ImageOps.exif_transpose(img) if upright else img)
                    except UnsupportedImageError as err:
                        raise ImageReadError(path, str(err)) from None
    except ImageReadError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, _unsupported_reason(path)) from None
    except Image.DecompressionBombError as err:
        raise ImageReadError(path, f"too many pixels, possible decompression bomb ({err})") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode it") from None
    except Exception as err:  # noqa: BLE001 - whatever a decoder raises is this file's failure
        raise ImageReadError(path, _decode_failure(err)) from None
    return _as_gray_rgb_or_rgba(path, array)


def _decode_failure(err: Exception) -> str:
    """Why a decoder failed: a missing codec is not damage, anything else is."""
    if isinstance(err, ImportError) or "imagecodecs" in str(err):
        return f"cannot decode its compression here ({err}); pip install imagecodecs"
    detail = str(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
    return f"corrupt or truncated image ({detail})"


def _unsupported_reason(path: Path) -> str:
    """Name the format Pillow would have picked by content, without decoding anything."""
    with open(path, "rb") as f:
        prefix = f.read(16)
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        if name not in READ_FORMATS and accept is not None and accept(prefix):
            return f"not a supported image format ({name}); derain reads {', '.join(READ_FORMATS)}"
    return "not an image file in a supported format (" + ", ".join(READ_FORMATS) + ")"


def _check_jpeg_data_length(path: Path, img: Image.Image) -> None:
    """Refuse a JPEG whose data ends before its declared size is covered.

    libjpeg only warns when the data ends at a marker, and fills the rest with grey, so a
    tiny file declaring 9000x9000 pixels would decode "successfully".
    """
    if _jpeg_sof_marker(path) not in _HUFFMAN_SOF:
        return  # arithmetic coding can spend less than a bit per block
    width, height = img.size
    h_max = max(h for _, h, _, _ in img.layer)
    v_max = max(v for _, _, v, _ in img.layer)
    blocks = sum(
        math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8)
        for _, h, v, _ in img.layer
    )
    if path.stat().st_size * 8 < blocks:
        raise ImageReadError(
            path,
            f"corrupt or truncated image (the data ends before the declared {width}x{height} "
            "pixels are covered)",
        )


def _jpeg_sof_marker(path: Path) -> int | None:
    """The start-of-frame marker byte of a JPEG (0xC0 baseline, 0xC2 progressive, ...)."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        kind = data[position + 1]
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            return kind
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


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


def _read_tiff_16bit(path: Path) -> np.ndarray:
    """The first page of a 16-bit colour TIFF as H×W×C, CMYK converted to RGB as Pillow does."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        array = page.asarray()
        if page.planarconfig == _TIFF_PLANAR_SEPARATE and array.ndim == 3:
            array = np.moveaxis(array, 0, -1)  # planes first in the file: samples last
        if page.photometric == _TIFF_PHOTOMETRIC_SEPARATED:
            inkset = page.tags.valueof("InkSet", _TIFF_INKSET_CMYK)
            if inkset != _TIFF_INKSET_CMYK or array.ndim != 3 or array.shape[2] < 4:
                raise ImageReadError(path, f"separated (ink) TIFF with {array.shape} samples is not CMYK")
            array = np.concatenate([_cmyk_to_rgb(array[..., :4]), array[..., 4:5]], axis=2)
    return np.ascontiguousarray(array)


def _cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """Pillow's CMYK conversion, ``R = (1 - C)(1 - K)``, at 16 bits."""
    ink = cmyk.astype(np.float64) / 65535
    rgb = (1 - ink[..., :3]) * (1 - ink[..., 3:4])
    return np.rint(rgb * 65535).astype(np.uint16)


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


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3): gray repeated, alpha dropped, 16 bits rounded;
    what rain synthesis, frame folders and the no-reference scores work on."""
    image = to_uint8(read_image(path))
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


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
    get the mean of the three output channels; the saved alpha channel is appended. A NaN or
    infinite value raises ``ValueError``: clamping would hide it as black or white pixels.
    """
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected a single image (1, 3, H, W), got {tuple(tensor.shape)}")
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected an RGB tensor (3, H, W), got {tuple(tensor.shape)}")
    image = tensor.detach().float().cpu()
    if not torch.isfinite(image).all():
        bad = int((~torch.isfinite(image)).sum())
        raise ValueError(f"the model output holds {bad} NaN or infinite value(s); the weights may be damaged")
    image = image.clamp(0, 1)
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
