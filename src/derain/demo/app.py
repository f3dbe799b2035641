"""The ``derain demo`` page: upload or pick a rainy photo, compare it with the derained result.

Built with Gradio (the optional extra ``derain[demo]``). It works with no network: analytics
and server-side rendering are off, and the theme uses the system's fonts instead of Google's
font CDN. Both images reach the before/after slider as PNG files written here, so the
comparison is lossless (the slider's own default re-encodes as WebP), and the full-resolution
PNG is offered for download. Bad input (an unreadable or oversized upload, a checkpoint path
that is missing or holds another model) is reported on the page and the page stays usable.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read by gradio at import

import functools
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import gradio as gr
from torch import nn

from .. import pretrained
from ..checkpoint import CheckpointError, load_checkpoint
from ..factory import model_card
from ..imageio import ImageReadError, read_image, write_image
from ..inference import Deraining, inference_card
from . import DEFAULT_MAX_PIXELS

CHECKPOINT_CHOICE = "checkpoint file"
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
SYSTEM_MONO_FONTS = ["ui-monospace", "monospace"]


def example_paths() -> list[Path]:
    """The bundled rainy photos (public-domain/CC0 photos with derain's synthetic rain)."""
    folder = resources.files("derain.demo") / "examples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".png"))


@dataclass(frozen=True)
class Restored:
    """One derained upload: lossless PNGs of input and result, its size and the time taken."""

    rainy: Path
    restored: Path
    width: int
    height: int
    seconds: float


@functools.lru_cache(maxsize=2)
def _load(choice: str, path: str, modified_ns: int) -> nn.Module:
    # The file's path and time are part of the cache key, so a rewritten file is reloaded.
    if choice == CHECKPOINT_CHOICE:
        return load_checkpoint(path)
    return pretrained.load_pretrained(choice)


def load_model(choice: str, checkpoint: str | None) -> nn.Module:
    """The pretrained weights named ``choice``, or the checkpoint file at ``checkpoint``."""
    if choice == CHECKPOINT_CHOICE:
        if not checkpoint or not checkpoint.strip():
            raise CheckpointError("choose a checkpoint file: its path is empty")
        path = Path(checkpoint.strip()).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint file not found: {path}")
    else:
        path = pretrained.pretrained_card(choice).weights
        if not path.is_file():
            return pretrained.load_pretrained(choice)  # raises, naming the missing file
    return _load(choice, str(path), path.stat().st_mtime_ns)


def restore_file(
    upload: str | Path,
    model: nn.Module,
    out_dir: Path,
    *,
    tile: int | None,
    device: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Restored:
    """Derain the image file ``upload`` and write both PNGs into ``out_dir``; the time covers decode to encode."""
    upload = Path(upload)
    started = time.perf_counter()
    rainy = read_image(upload, max_pixels=max_pixels)
    overlap = min(inference_card(model).overlap, tile // 4) if tile else 0  # small tiles keep most of each tile their own
    restored = Deraining(model, tile=tile, overlap=overlap, device=device)(rainy)
    out_dir.mkdir(parents=True, exist_ok=True)
    rainy_png = write_image(out_dir / f"{upload.stem}.png", rainy)
    restored_png = write_image(out_dir / f"{upload.stem}_derained.png", restored)
    seconds = time.perf_counter() - started
    return Restored(rainy_png, restored_png, rainy.shape[1], rainy.shape[0], seconds)


def derain_upload(
    upload: str | None,
    choice: str,
    checkpoint: str,
    tile: float,
    *,
    work_dir: Path,
    device: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[tuple[str, str] | None, str | None, str]:
    """The page's action: (slider images, download file, status message); errors become the message."""
    if not upload:
        return None, None, "Upload a rainy photo or pick an example."
    try:
        model = load_model(choice, checkpoint)
        out_dir = Path(tempfile.mkdtemp(dir=work_dir))
        result = restore_file(upload, model, out_dir, tile=int(tile) or None, device=device, max_pixels=max_pixels)
    except ImageReadError as err:
        return None, None, f"**Cannot use this upload:** {err.reason}"
    except (CheckpointError, ValueError, OSError, RuntimeError) as err:
        # ValueError covers PretrainedError and bad tile sizes; RuntimeError, out of memory.
        return None, None, f"**Error:** {err}"
    model_name = Path(checkpoint).name if choice == CHECKPOINT_CHOICE else choice
    status = (
        f"**{result.width} × {result.height}** pixels, derained in **{result.seconds:.2f} s** "
        f"with {model_name} (tile {int(tile) or 'off'})"
    )
    return (str(result.rainy), str(result.restored)), str(result.restored), status


def build_app(work_dir: Path, *, device: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS) -> gr.Blocks:
    """The page; each result is written into a new folder under ``work_dir``."""
    tags = sorted(pretrained.catalogue().cards)
    default_choice = pretrained.DEFAULT_TAG if pretrained.DEFAULT_TAG in tags else CHECKPOINT_CHOICE
    # the slider starts at the default model's tile, as `derain run` and derain.derain() use it
    default_tile = model_card(pretrained.pretrained_card(default_choice).architecture).tile if default_choice in tags else None

    with gr.Blocks(title="derain", analytics_enabled=False) as app:
        gr.Markdown("# derain\nRemove rain streaks from a photo. Everything runs on this machine.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="rainy photo", file_types=["image"], type="filepath", elem_id="upload")
                examples = [str(p) for p in example_paths()]
                gallery = gr.Gallery(
                    examples, label="examples: click one", columns=3, height=140, allow_preview=False, elem_id="examples"
                )
                choice = gr.Dropdown(tags + [CHECKPOINT_CHOICE], value=default_choice, label="model")
                checkpoint = gr.Textbox(label="checkpoint path (for 'checkpoint file')", elem_id="checkpoint")
                tile = gr.Slider(0, 1024, value=default_tile or 0, step=32, label="tile size in pixels (0: whole image)")
                run = gr.Button("Derain", variant="primary", elem_id="run")
            with gr.Column():
                slider = gr.ImageSlider(label="before / after", type="filepath", format="png", elem_id="slider")
                status = gr.Markdown(elem_id="status")
                download = gr.DownloadButton("Download PNG", elem_id="download")

        def pick_example(event: gr.SelectData) -> str:  # gradio passes the click by this annotation
            return examples[event.index]

        gallery.select(pick_example, None, upload)
        action = functools.partial(derain_upload, work_dir=work_dir, device=device, max_pixels=max_pixels)
        run.click(action, [upload, choice, checkpoint, tile], [slider, download, status])
    return app


def launch(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    device: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    block: bool = True,
) -> gr.Blocks:
    """Serve the page; with ``block=False`` return at once (the caller ends it with ``.close()``)."""
    work_dir = Path(tempfile.mkdtemp(prefix="derain-demo-"))
    app = build_app(work_dir, device=device, max_pixels=max_pixels)
    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO_FONTS)
    app.launch(
        server_name=host,
        server_port=port,
        theme=theme,
        ssr_mode=False,
        allowed_paths=[str(work_dir)] + [str(p) for p in example_paths()],
        max_file_size="200mb",
        footer_links=[],
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return app
