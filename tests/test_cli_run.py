"""``derain run`` and ``derain models`` on a folder of mixed real-world files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import derain
from derain.cli import models as models_command
from derain.cli import run as run_command
from derain.imageio import read_image, write_image
from conftest import cli, install_pretrained
from test_pretrained import DEFAULT, install_tiny_pretrained


@pytest.fixture
def mixed_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    write_image(folder / "dot.png", rng.integers(0, 256, (1, 1, 3), dtype=np.uint8))
    write_image(folder / "wide.jpg", rng.integers(0, 256, (40, 600, 3), dtype=np.uint8))
    write_image(folder / "gray.png", rng.integers(0, 256, (33, 47), dtype=np.uint8))
    write_image(folder / "logo.png", rng.integers(0, 256, (30, 20, 4), dtype=np.uint8))
    write_image(folder / "deep.tif", rng.integers(0, 65536, (25, 31, 3), dtype=np.uint16))
    write_image(folder / "sub" / "nested.webp", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate: the 10x20 file shows as 20x10
    Image.fromarray(rng.integers(0, 256, (10, 20, 3), dtype=np.uint8)).save(folder / "turned.jpg", exif=exif)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.bmp").write_text("not an image")
    cut = write_image(folder / "cut.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    cut.write_bytes(cut.read_bytes()[:300])
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    return folder


def test_mixed_folder(mixed_folder, weights, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli(run_command, ["run", str(mixed_folder), "-o", str(out), "--model", "drsformer",
                             "--weights", str(weights), "--tile", "32", "--overlap", "8", "--device", "cpu"])
    assert code == 1  # some inputs failed
    err = capsys.readouterr().err
    assert "derained 6 image(s)" in err and "3 failed" in err
    assert "empty.png: empty file (0 bytes)" in err
    assert "notes.bmp: not an image" in err
    assert "cut.png: corrupt or truncated" in err
    written = {p.name: read_image(p) for p in out.iterdir()}
    assert sorted(written) == ["deep.png", "dot.png", "gray.png", "logo.png", "turned.png", "wide.png"]
    assert written["dot.png"].shape == (1, 1, 3)
    assert written["wide.png"].shape == (40, 600, 3)
    assert written["gray.png"].shape == (33, 47)
    assert written["turned.png"].shape == (20, 10, 3)
    assert written["deep.png"].dtype == np.uint16 and written["deep.png"].shape == (25, 31, 3)
    np.testing.assert_array_equal(written["logo.png"][..., 3], read_image(mixed_folder / "logo.png")[..., 3])


def test_recursive_glob_format_and_success_code(mixed_folder, weights, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli(run_command, ["run", str(mixed_folder), "-o", str(out), "--recursive", "--model", "drsformer",
                             "--weights", str(weights), "--device", "cpu"])
    assert code == 1 and (out / "sub" / "nested.png").is_file()
    code = cli(run_command, ["run", str(mixed_folder / "*.tif"), str(mixed_folder / "logo.png"), "-o", str(out),
                             "--format", "jpg", "--model", "drsformer", "--weights", str(weights)])
    assert code == 0
    assert read_image(out / "deep.jpg").dtype == np.uint8  # JPEG holds 8 bits
    assert read_image(out / "logo.jpg").shape == (30, 20, 3)  # and no alpha
    assert "derained 2 image(s)" in capsys.readouterr().err


def test_never_overwrites_an_input_without_permission(tmp_path, weights, capsys):
    path = write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    before = path.read_bytes()
    argv = ["run", str(path), "-o", str(tmp_path), "--model", "drsformer", "--weights", str(weights)]
    assert cli(run_command, argv) == 1
    assert "is an input file; pass --overwrite" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert cli(run_command, argv + ["--overwrite"]) == 0
    assert read_image(path).shape == (8, 8, 3)


def test_usage_errors(tmp_path, weights, capsys, monkeypatch):
    image = str(write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8)))
    out = str(tmp_path / "out")
    install_pretrained(monkeypatch, None)
    assert cli(run_command, ["run", image, "-o", out]) == 2
    assert f"no pretrained weights '{DEFAULT}' are installed" in capsys.readouterr().err
    install_tiny_pretrained(tmp_path / "pretrained", monkeypatch)
    assert cli(run_command, ["run", image, "-o", out, "--model", "dmsr"]) == 2
    assert f"pretrained weights '{DEFAULT}' are for 'drsformer', not 'dmsr'" in capsys.readouterr().err
    assert cli(run_command, ["run", image, "-o", out, "--pretrained", "rain9000"]) == 2
    assert f"(available: {DEFAULT})" in capsys.readouterr().err
    assert cli(run_command, ["run", image, "-o", out, "--model", "drsformer", "--weights", "missing.pth"]) == 2
    assert "checkpoint file not found: missing.pth" in capsys.readouterr().err
    official_layout = tmp_path / "drsformer_params.pth"  # BasicSR layout, no derain metadata
    torch.save({"params": torch.load(weights, weights_only=True)["params"]}, official_layout)
    assert cli(run_command, ["run", image, "-o", out, "--model", "dmsr", "--weights", str(official_layout)]) == 2
    assert "drsformer" in capsys.readouterr().err  # the loader names what the file looks like
    assert cli(run_command, ["run", str(tmp_path / "nothing*.png"), "-o", out, "--model", "drsformer",
                             "--weights", str(weights)]) == 1
    assert "no file matches it as a glob" in capsys.readouterr().err


def _run_tiny(weights, *inputs, out, extra=()):
    return cli(run_command, ["run", *map(str, inputs), "-o", str(out), "--model", "drsformer",
                             "--weights", str(weights), "--device", "cpu", *extra])


def test_dotted_names_keep_their_whole_stem(tmp_path, weights, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        write_image(frames / f"frame.{i:04d}.png", np.full((8, 8, 3), i, np.uint8))
    dots = write_image(tmp_path / "..png", np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    assert _run_tiny(weights, frames, dots, out=out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["..png", "frame.0000.png", "frame.0001.png", "frame.0002.png"]


def test_device_without_a_gpu_is_one_line(tmp_path, weights, capsys, monkeypatch):
    image = write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setattr(torch.version, "cuda", None)
    assert _run_tiny(weights, image, out=tmp_path / "out", extra=["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda: this torch" in err and "built without CUDA" in err
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert _run_tiny(weights, image, out=tmp_path / "out", extra=["--device", "cuda:1"]) == 2
    assert "--device cuda:1: no such CUDA GPU here (0 found)" in capsys.readouterr().err
    assert _run_tiny(weights, image, out=tmp_path / "out", extra=["--device", "gpu"]) == 2
    assert "--device 'gpu' is not a device name" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_created_is_one_line(tmp_path, weights, capsys):
    image = write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "in_the_way").write_text("a file")
    assert _run_tiny(weights, image, out=tmp_path / "in_the_way" / "out") == 2
    err = capsys.readouterr().err
    assert f"cannot create the output folder {tmp_path / 'in_the_way' / 'out'}: Not a directory" in err


def test_ctrl_c_prints_a_summary_and_exits_130(tmp_path, weights, capsys, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        write_image(folder / f"{i}.png", np.full((8, 8, 3), i, np.uint8))
    calls = []

    def read_until_interrupted(path, **options):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return read_image(path, **options)

    monkeypatch.setattr(run_command, "read_image", read_until_interrupted)
    assert _run_tiny(weights, folder, out=tmp_path / "out") == 130
    assert "interrupted: 3 of 5 images derained" in capsys.readouterr().err


def test_default_model_writes_into_derained(tmp_path, monkeypatch, capsys):
    """``derain run photo.jpg`` alone: the shipped default model, output in ./derained/."""
    model = install_tiny_pretrained(tmp_path / "pretrained", monkeypatch)
    rainy = np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    write_image(tmp_path / "photo.jpg", rainy)
    monkeypatch.chdir(tmp_path)
    assert cli(run_command, ["run", "photo.jpg"]) == 0
    restored = read_image(tmp_path / "derained" / "photo.png")
    expected = derain.derain(read_image(tmp_path / "photo.jpg"), model, device="cpu")
    np.testing.assert_array_equal(restored, expected)


def test_working_size_from_the_card_and_from_the_command_line(tmp_path, monkeypatch):
    from derain.pretrained import save_pretrained
    from test_pretrained import tiny_card_fields

    model = install_tiny_pretrained(tmp_path / "pretrained", monkeypatch)
    save_pretrained(model, tmp_path / "pretrained", **tiny_card_fields() | {"working_size": 24})
    rainy = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    write_image(tmp_path / "photo.png", rainy)
    monkeypatch.chdir(tmp_path)
    for flag, working_size in (([], 24), (["--working-size", "32"], 32), (["--working-size", "0"], None)):
        assert cli(run_command, ["run", "photo.png", "-o", "out", *flag]) == 0
        expected = derain.derain(rainy, model, device="cpu", working_size=working_size)
        np.testing.assert_array_equal(read_image(tmp_path / "out" / "photo.png"), expected)
    assert not np.array_equal(expected, derain.derain(rainy, model, device="cpu", working_size=24))


def test_models_command(tmp_path, monkeypatch, capsys, no_pretrained):
    assert cli(models_command, ["models"]) == 0
    listing = capsys.readouterr().out
    for name in derain.list_models():
        assert name in listing
    assert "pretrained weights: none shipped" in listing
    assert cli(models_command, ["models", "dmsr"]) == 0
    card = capsys.readouterr().out
    assert "size_multiple: 16" in card and "num_params: " in card
    install_tiny_pretrained(tmp_path, monkeypatch)
    assert cli(models_command, ["models"]) == 0
    listing = capsys.readouterr().out
    size = (tmp_path / f"{DEFAULT}.safetensors").stat().st_size / 2**20
    assert f"pretrained {DEFAULT} ({size:.1f} MB): drsformer, 10 steps in 2 min" in listing
    assert "light +5.0 dB, medium +6.0 dB, heavy +7.0 dB" in listing
    assert cli(models_command, ["models", "drsformer"]) == 0
    assert f"pretrained weights: {DEFAULT}" in capsys.readouterr().out
    assert cli(models_command, ["models", DEFAULT]) == 0
    card = capsys.readouterr().out
    assert "command: derain train configs/default.yaml" in card and "sha256: " in card


def test_a_folder_of_damaged_and_hostile_files_next_to_good_ones(tmp_path, weights, capsys, monkeypatch):
    """Every good file is derained, every bad one named, and no input starts a program."""
    import subprocess
    import zlib

    import tifffile

    from test_imageio import EPS, _tiff_with_tag

    def no_programs(*args, **kwargs):
        raise AssertionError(f"an external program was started: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", no_programs)
    rng = np.random.default_rng(5)
    folder = tmp_path / "mixed"
    folder.mkdir()
    rgb8, rgb16 = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8), rng.integers(0, 65536, (16, 12, 3), dtype=np.uint16)
    write_image(folder / "frame.0001.png", rgb8)
    write_image(folder / "frame.0002.png", rgb8)
    write_image(folder / "photo.jpg", rgb8)
    tifffile.imwrite(folder / "camera_lzw.tif", rgb16, photometric="rgb", compression="lzw")
    tifffile.imwrite(folder / "cmyk16.tif", rng.integers(0, 65536, (16, 12, 4), dtype=np.uint16), photometric="separated")
    tifffile.imwrite(folder / "planar16.tif", np.moveaxis(rgb16, 2, 0), photometric="rgb", planarconfig="separate")
    good = ["camera_lzw.png", "cmyk16.png", "frame.0001.png", "frame.0002.png", "photo.png", "planar16.png"]

    (folder / "ghostscript.png").write_bytes(EPS)
    Image.fromarray(rgb8).save(folder / "animation.webp", format="GIF")
    _tiff_with_tag(folder / "zero_tiles.tif", np.zeros((32, 32, 3), np.uint16), "TileLength", 0, tile=(16, 16), photometric="rgb")
    (folder / "empty.png").write_bytes(b"")
    cut = write_image(folder / "cut.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    cut.write_bytes(cut.read_bytes()[:200])
    bomb = bytearray(write_image(folder / "bomb.png", np.zeros((1, 1), np.uint8)).read_bytes())
    bomb[16:24] = (100_000).to_bytes(4, "big") * 2
    bomb[29:33] = zlib.crc32(bytes(bomb[12:29])).to_bytes(4, "big")
    (folder / "bomb.png").write_bytes(bytes(bomb))
    big = bytearray(write_image(folder / "declared_big.jpg", rgb8).read_bytes())
    frame = big.find(b"\xff\xc0")
    big[frame + 5 : frame + 9] = (3000).to_bytes(2, "big") * 2
    (folder / "declared_big.jpg").write_bytes(bytes(big))
    (folder / "notes.bmp").write_text("not an image")
    bad = {
        "ghostscript.png": "not a supported image format (EPS)",
        "animation.webp": "not a supported image format (GIF)",
        "zero_tiles.tif": "corrupt or truncated image (ZeroDivisionError",
        "empty.png": "empty file",
        "cut.png": "corrupt or truncated",
        "bomb.png": "too many pixels, possible decompression bomb",
        "declared_big.jpg": "corrupt or truncated image (the data ends before the declared 3000x3000 pixels",
        "notes.bmp": "not an image file in a supported format",
    }

    out = tmp_path / "out"
    assert _run_tiny(weights, folder, out=out) == 1
    err = capsys.readouterr().err
    assert f"derained {len(good)} image(s)" in err and f"{len(bad)} failed" in err
    for name, reason in bad.items():
        assert f"{folder / name}: {reason}" in err, name
    assert sorted(p.name for p in out.iterdir()) == good


def test_a_folder_with_sub_folders_says_what_it_skipped(tmp_path, weights, capsys):
    folder = tmp_path / "trip"
    for path in ("day1/a.png", "day1/b.jpg", "day2/c.png", "top.png"):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        write_image(folder / path, np.zeros((8, 8, 3), np.uint8))
    argv = ["run", str(folder), "-o", str(tmp_path / "out"), "--weights", str(weights), "--device", "cpu"]
    assert cli(run_command, argv) == 0
    err = capsys.readouterr().err
    assert f"{folder}: skipped 2 sub-folder(s) holding 3 image(s); pass --recursive to derain them too" in err
    assert "derained 1 image(s)" in err
    assert cli(run_command, argv + ["--recursive"]) == 0
    err = capsys.readouterr().err
    assert "skipped" not in err and "derained 4 image(s)" in err
