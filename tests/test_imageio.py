"""Reading and writing every supported format, and the failure paths of bad files."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageOps

from derain.imageio import (
    ImageReadError,
    from_tensor,
    read_image,
    to_tensor,
    fit_to_format,
    to_uint8,
    write_image,
)

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)
RGBA8 = RNG.integers(0, 256, (9, 13, 4), dtype=np.uint8)
GRAY8 = RNG.integers(0, 256, (9, 13), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (9, 13, 3), dtype=np.uint16)
RGBA16 = RNG.integers(0, 65536, (9, 13, 4), dtype=np.uint16)
GRAY16 = RNG.integers(0, 65536, (9, 13), dtype=np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".bmp", ".PNG"])
@pytest.mark.parametrize("array", [RGB8, RGBA8, GRAY8], ids=["rgb", "rgba", "gray"])
def test_lossless_round_trip_8bit(tmp_path, suffix, array):
    if suffix == ".bmp" and array.ndim == 3 and array.shape[2] == 4:
        pytest.skip("BMP holds no alpha (refusal tested below)")
    restored = read_image(write_image(tmp_path / f"image{suffix}", array))
    assert restored.dtype == np.uint8
    np.testing.assert_array_equal(restored, array)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("array", [RGB16, RGBA16, GRAY16], ids=["rgb", "rgba", "gray"])
def test_16bit_kept(tmp_path, suffix, array):
    path = write_image(tmp_path / f"image{suffix}", array)
    restored = read_image(path)
    assert restored.dtype == np.uint16
    np.testing.assert_array_equal(restored, array)


@pytest.mark.parametrize("suffix,channels", [(".JPG", 3), (".jpeg", 1), (".webp", 3), (".webp", 4)])
def test_lossy_round_trip_is_close(tmp_path, suffix, channels):
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None]
    smooth = np.broadcast_to(ramp, (48, 64, channels)).copy()
    smooth = smooth[..., 0] if channels == 1 else smooth
    restored = read_image(write_image(tmp_path / f"a{suffix}", smooth))
    assert restored.shape == smooth.shape and restored.dtype == np.uint8
    assert np.abs(restored.astype(int) - smooth).max() <= 6


def test_16bit_gray_alpha_png_becomes_rgba(tmp_path):
    import png

    gray_alpha = RNG.integers(0, 65536, (4, 5, 2), dtype=np.uint16)
    path = tmp_path / "la16.png"
    with open(path, "wb") as f:
        png.Writer(5, 4, greyscale=True, alpha=True, bitdepth=16).write(f, gray_alpha.reshape(4, 10))
    restored = read_image(path)
    assert restored.shape == (4, 5, 4) and restored.dtype == np.uint16
    for c in range(3):
        np.testing.assert_array_equal(restored[..., c], gray_alpha[..., 0])
    np.testing.assert_array_equal(restored[..., 3], gray_alpha[..., 1])


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_exif_orientation_applied(tmp_path, orientation, suffix):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{suffix}"
    Image.fromarray(RGB8).save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("orientation", [3, 6, 7])
def test_exif_orientation_applied_to_16bit_colour_tiff(tmp_path, orientation):
    path = tmp_path / "o16.tif"
    tifffile.imwrite(path, RGB16, photometric="rgb", extratags=[(274, "H", 1, orientation)])
    reference = Image.fromarray(RGB8)  # same geometry, 8-bit, to get Pillow's transform
    exif = Image.Exif()
    exif[0x0112] = orientation
    reference.save(tmp_path / "ref.tif", exif=exif)
    expected_shape = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "ref.tif"))).shape
    restored = read_image(path)
    assert restored.shape == expected_shape
    index = np.arange(RGB16.size // 3).reshape(9, 13)
    turned = {3: index[::-1, ::-1], 6: np.rot90(index, -1), 7: index[::-1, ::-1].T}[orientation]
    np.testing.assert_array_equal(restored, RGB16.reshape(-1, 3)[turned])


def test_palette_and_cmyk_become_rgb(tmp_path):
    palette = Image.fromarray(RGB8).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))

    transparent = palette.copy()
    transparent.info["transparency"] = 0
    transparent.save(tmp_path / "pt.png", transparency=0)
    assert read_image(tmp_path / "pt.png").shape == (9, 13, 4)

    cmyk = Image.fromarray(RGB8).convert("CMYK")
    cmyk.save(tmp_path / "c.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif"), np.asarray(cmyk.convert("RGB")))

    Image.fromarray(GRAY8 > 127).save(tmp_path / "bw.png")  # 1-bit
    np.testing.assert_array_equal(read_image(tmp_path / "bw.png"), np.where(GRAY8 > 127, 255, 0))


def test_missing_empty_and_non_image_files(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: empty file \(0 bytes\)"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("not an image at all")
    with pytest.raises(ImageReadError, match=r"notes\.jpg: not an image"):
        read_image(tmp_path / "notes.jpg")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_truncated_file(tmp_path, suffix):
    big = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = write_image(tmp_path / f"cut{suffix}", big)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"cut\\{suffix}: corrupt or truncated"):
        read_image(path)


def test_corrupt_16bit_png(tmp_path):
    path = write_image(tmp_path / "rgb16.png", RGB16)
    data = bytearray(path.read_bytes())
    data[60:80] = b"\x00" * 20  # inside the image data chunk
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="rgb16.png: corrupt"):
        read_image(path)


def test_pixel_limit_refuses_before_decoding(tmp_path):
    path = write_image(tmp_path / "big.png", np.zeros((100, 200), np.uint8))
    with pytest.raises(ImageReadError, match=r"big\.png: 200x100 = 20000 pixels exceeds the limit"):
        read_image(path, max_pixels=19_999)
    assert read_image(path, max_pixels=20_000).shape == (100, 200)


def test_decompression_bomb_header(tmp_path):
    # A tiny file whose header claims 1,000,000 x 1,000,000 pixels.
    path = write_image(tmp_path / "bomb.png", np.zeros((1, 1), np.uint8))
    data = bytearray(path.read_bytes())
    data[16:24] = (1_000_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR checksum
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="bomb.png: .*(decompression bomb|pixels)"):
        read_image(path)


def test_write_refusals_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"a\.jpg: JPEG cannot store 16-bit"):
        write_image(tmp_path / "a.jpg", RGB16)
    with pytest.raises(ValueError, match=r"a\.jpg: JPEG cannot store an alpha"):
        write_image(tmp_path / "a.jpg", RGBA8)
    with pytest.raises(ValueError, match=r"a\.bmp: BMP cannot store an alpha"):
        write_image(tmp_path / "a.bmp", RGBA8)
    with pytest.raises(ValueError, match=r"a\.gif: unknown image suffix"):
        write_image(tmp_path / "a.gif", RGB8)
    with pytest.raises(ValueError, match=r"a\.png: expected a uint8 or uint16 array, got float32"):
        write_image(tmp_path / "a.png", RGB8.astype(np.float32))
    with pytest.raises(ValueError, match=r"expected an H×W, H×W×3 or H×W×4 array"):
        write_image(tmp_path / "a.png", np.zeros((4, 4, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"previous")
    write_image(path, RGB8)
    np.testing.assert_array_equal(read_image(path), RGB8)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_to_uint8_rounds():
    np.testing.assert_array_equal(
        to_uint8(np.array([0, 128, 129, 257, 65535], np.uint16)), [0, 0, 1, 1, 255]
    )


@pytest.mark.parametrize("array", [RGB8, RGBA8, GRAY8, RGB16, RGBA16, GRAY16, GRAY8[..., None]])
def test_tensor_round_trip_is_exact(array):
    tensor, info = to_tensor(array)
    assert tensor.shape == (1, 3, 9, 13) and tensor.dtype == torch.float32
    assert 0 <= tensor.min() and tensor.max() <= 1
    expected = array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array
    np.testing.assert_array_equal(from_tensor(tensor, info), expected)


def test_from_tensor_clamps_rounds_and_keeps_alpha():
    _, info = to_tensor(RGBA8)
    out = torch.full((1, 3, 9, 13), 0.5)
    out[0, 0, 0, 0], out[0, 1, 0, 0] = -1.0, 2.0
    array = from_tensor(out, info)
    assert array.dtype == np.uint8 and array.shape == (9, 13, 4)
    assert array[0, 0, 0] == 0 and array[0, 0, 1] == 255 and array[1, 1, 0] == 128
    np.testing.assert_array_equal(array[..., 3], RGBA8[..., 3])


def test_grayscale_output_is_channel_mean():
    _, info = to_tensor(GRAY8)
    out = torch.stack([torch.full((9, 13), v) for v in (0.0, 0.5, 1.0)])[None]
    array = from_tensor(out, info)
    assert array.shape == (9, 13) and (array == 128).all()


def test_float_arrays_pass_through():
    array = RNG.random((5, 6, 3), dtype=np.float32)
    tensor, info = to_tensor(array)
    np.testing.assert_allclose(from_tensor(tensor, info), array, atol=1e-7)


def test_to_tensor_rejects_bad_layouts():
    with pytest.raises(ValueError, match=r"got \(4, 4, 2\)"):
        to_tensor(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="got int32"):
        to_tensor(np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match=r"single image"):
        from_tensor(torch.zeros(2, 3, 4, 4), to_tensor(np.zeros((4, 4), np.uint8))[1])


def test_fit_to_format_reduces_only_what_the_format_cannot_hold():
    assert fit_to_format(RGBA16, ".png") is RGBA16
    jpeg = fit_to_format(RGBA16, ".JPG")
    assert jpeg.dtype == np.uint8 and jpeg.shape == (9, 13, 3)
    assert fit_to_format(RGBA16, ".webp").shape == (9, 13, 4)
    with pytest.raises(ValueError, match="unknown image suffix '.gif'"):
        fit_to_format(RGB8, ".gif")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_orientation_can_be_ignored_as_matlab_imread_does(tmp_path, suffix):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"o{suffix}"
    Image.fromarray(RGB8).save(path, exif=exif)
    raw = read_image(path, upright=False)
    assert raw.shape == RGB8.shape
    assert read_image(path).shape == (RGB8.shape[1], RGB8.shape[0], 3)


def _tiff_with_tag(path, array, tag_name, value, **options):
    """Write ``array`` as a TIFF, then overwrite one short tag value in place."""
    tifffile.imwrite(path, array, **options)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags[tag_name]
        offset, dtype = tag.valueoffset, tag.dtype
    data = bytearray(path.read_bytes())
    size = 2 if dtype == 3 else 4  # SHORT or LONG
    data[offset : offset + size] = value.to_bytes(size, "little")
    path.write_bytes(bytes(data))
    return path


def test_any_decoder_exception_is_the_files_failure(tmp_path):
    # tifffile raises ZeroDivisionError on a tile length of 0.
    path = _tiff_with_tag(tmp_path / "tiles.tif", RGB16[:8, :8].repeat(4, 0).repeat(4, 1), "TileLength", 0,
                          tile=(16, 16), photometric="rgb")
    with pytest.raises(ImageReadError, match=r"tiles\.tif: corrupt or truncated image \(ZeroDivisionError"):
        read_image(path)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n"


def test_formats_outside_the_allow_list_are_never_decoded(tmp_path, monkeypatch):
    import subprocess

    def no_programs(*args, **kwargs):
        raise AssertionError(f"an external program was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_programs)
    (tmp_path / "photo.png").write_bytes(EPS)
    with pytest.raises(ImageReadError, match=r"photo\.png: not a supported image format \(EPS\)"):
        read_image(tmp_path / "photo.png")
    Image.fromarray(RGB8).save(tmp_path / "anim.png", format="GIF")
    with pytest.raises(ImageReadError, match=r"anim\.png: not a supported image format \(GIF\)"):
        read_image(tmp_path / "anim.png")


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd"])
def test_compressed_16bit_tiffs_are_read(tmp_path, compression):
    tifffile.imwrite(tmp_path / "c.tif", RGB16, photometric="rgb", compression=compression)
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif"), RGB16)


def test_jpeg_compressed_tiff_is_read(tmp_path):
    columns, rows = np.meshgrid(np.arange(32) * 8, np.arange(24) * 10)
    smooth = np.stack([columns, rows, np.full_like(rows, 99)], axis=2)
    tifffile.imwrite(tmp_path / "j.tif", smooth.astype(np.uint8), photometric="rgb", compression="jpeg")
    assert np.abs(read_image(tmp_path / "j.tif").astype(int) - smooth).mean() < 3


def test_a_missing_codec_is_not_called_damage(tmp_path, monkeypatch):
    import derain.imageio

    def without_codec(path):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(derain.imageio, "_read_tiff_16bit", without_codec)
    tifffile.imwrite(tmp_path / "c.tif", RGB16, photometric="rgb")
    with pytest.raises(ImageReadError, match="c.tif: cannot decode its compression here") as info:
        read_image(tmp_path / "c.tif")
    assert "corrupt" not in str(info.value)


def test_16bit_cmyk_tiff_becomes_rgb(tmp_path):
    cmyk = RNG.integers(0, 65536, (9, 13, 4), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "cmyk.tif", cmyk, photometric="separated")
    ink = cmyk / 65535
    expected = np.rint((1 - ink[..., :3]) * (1 - ink[..., 3:]) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(read_image(tmp_path / "cmyk.tif"), expected)


@pytest.mark.parametrize("array", [RGB16, RGBA16], ids=["rgb", "rgba"])
def test_16bit_planar_tiff_is_read(tmp_path, array):
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(array, 2, 0), photometric="rgb",
                     planarconfig="separate", extrasamples=[2] if array.shape[2] == 4 else None)
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif"), array)


def test_jpeg_declaring_more_pixels_than_its_data_is_truncated(tmp_path):
    path = tmp_path / "tiny.jpg"
    Image.fromarray(RGB8).save(path, quality=90)
    data = bytearray(path.read_bytes())
    frame = data.find(b"\xff\xc0")  # baseline frame header: marker, length, precision, height, width
    data[frame + 5 : frame + 9] = (2000).to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"tiny\.jpg: corrupt or truncated image \(the data ends"):
        read_image(path)
    progressive = write_image(tmp_path / "ok.jpg", RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    Image.open(progressive).save(progressive, progressive=True, quality=30)
    assert read_image(progressive).shape == (64, 64, 3)


def test_non_finite_model_output_is_refused():
    tensor, info = to_tensor(RGB8)
    tensor[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite value"):
        from_tensor(tensor, info)
