"""The demo's action without a browser: results, timing text and every error shown on the page."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("gradio", reason="the demo needs the optional extra derain[demo]")

from derain.demo import app  # noqa: E402
from derain.imageio import read_image, write_image  # noqa: E402
from test_pretrained import DEFAULT, install_tiny_pretrained  # noqa: E402


@pytest.fixture
def photo(tmp_path):
    rainy = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    return write_image(tmp_path / "photo.jpg", rainy)


def test_derain_upload(tmp_path, monkeypatch, photo):
    model = install_tiny_pretrained(tmp_path / "pretrained", monkeypatch)
    images, download, status = app.derain_upload(str(photo), DEFAULT, "", 32, work_dir=tmp_path, device="cpu")
    rainy_png, restored_png = images
    assert download == restored_png and restored_png.endswith("photo_derained.png")
    np.testing.assert_array_equal(read_image(rainy_png), read_image(photo))  # lossless copy of the decoded upload
    import derain

    expected = derain.derain(read_image(photo), model, tile=32, overlap=8, device="cpu")
    np.testing.assert_array_equal(read_image(restored_png), expected)
    assert status.startswith("**50 × 30** pixels, derained in **") and f"with {DEFAULT} (tile 32)" in status


def test_checkpoint_choice(tmp_path, monkeypatch, photo):
    import derain

    install_tiny_pretrained(tmp_path / "pretrained", monkeypatch)
    config = dict(derain.model_card("drsformer").tiny_config)
    weights = derain.save_weights(tmp_path / "mine.pth", derain.create_model("drsformer", **config), "drsformer", config)
    images, _, status = app.derain_upload(str(photo), app.CHECKPOINT_CHOICE, str(weights), 0, work_dir=tmp_path, device="cpu")
    assert images is not None and "with mine.pth (tile off)" in status


@pytest.mark.parametrize(
    ("choice", "checkpoint", "message"),
    [
        (app.CHECKPOINT_CHOICE, "", "choose a checkpoint file: its path is empty"),
        (app.CHECKPOINT_CHOICE, "missing.pth", "checkpoint file not found: missing.pth"),
        (app.CHECKPOINT_CHOICE, "OTHER", "parameter names match none of the registered models"),
        (DEFAULT, "", f"no pretrained weights '{DEFAULT}' are installed"),
    ],
)
def test_model_errors_become_messages(tmp_path, no_pretrained, photo, choice, checkpoint, message):
    if checkpoint == "OTHER":
        checkpoint = str(tmp_path / "classifier.pth")
        torch.save({"fc.weight": torch.zeros(2, 2)}, checkpoint)
    images, download, status = app.derain_upload(str(photo), choice, checkpoint, 0, work_dir=tmp_path, device="cpu")
    assert images is None and download is None
    assert status.startswith("**Error:**") and message in status


def test_bad_uploads_become_messages(tmp_path, monkeypatch, photo):
    install_tiny_pretrained(tmp_path / "pretrained", monkeypatch)
    (tmp_path / "empty.png").write_bytes(b"")
    run = lambda path, **kw: app.derain_upload(path, DEFAULT, "", 0, work_dir=tmp_path, device="cpu", **kw)  # noqa: E731
    assert run(None)[2] == "Upload a rainy photo or pick an example."
    assert run(str(tmp_path / "empty.png"))[2] == "**Cannot use this upload:** empty file (0 bytes)"
    oversized = run(str(photo), max_pixels=1000)[2]
    assert oversized.startswith("**Cannot use this upload:**") and "1500" in oversized
    assert run(str(photo))[0] is not None  # still usable afterwards


def test_examples_are_shipped_with_licences():
    examples = app.example_paths()
    assert [p.name for p in examples] == ["astronaut_light.png", "chelsea_medium.png", "coffee_heavy.png"]
    licences = (examples[0].parent / "LICENSES.md").read_text()
    for path in examples:
        assert path.name in licences
        assert read_image(path).shape[0] == 240
