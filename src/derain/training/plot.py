"""Training curves from a run folder's ``log.jsonl``: loss, validation PSNR and learning rate.

``log.jsonl`` is the record of a run whatever trackers were on; this draws it to one PNG with
matplotlib's Agg backend (no display needed), for people who would rather look than read JSON.
Needs matplotlib (the ``train`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import yaml

from .run_state import weights_step

# (record field, panel title, logarithmic y axis)
PANELS = (("loss", "training loss", True), ("val_psnr", "validation PSNR (dB)", False), ("lr", "learning rate", False))


class PlotError(ValueError):
    """A run folder without a readable ``log.jsonl``, or one with nothing to draw."""


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``RUN_DIR/log.jsonl``; a malformed line is named by its number."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise PlotError(f"{path}: not found; is {run_dir} a derain training run folder?")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise PlotError(f"{path}: line {number} is not JSON ({err})") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise PlotError(f"{path}: line {number} has no integer field step")
        records.append(record)
    return records


def stage_start(run_dir: Path, previous_end: int) -> int:
    """The step of the stage before at which a later stage begins: that of the checkpoint its
    ``model.init`` names (``step_NNNNNNNN[.ema].pth``), else the last step of the stage before."""
    try:
        init = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("model", {}).get("init") or ""
    except (OSError, yaml.YAMLError, AttributeError):
        init = ""
    step = weights_step(init)
    return previous_end if step is None else step


def joined_stages(run_dirs: Sequence[Path]) -> list[tuple[Path, dict[str, list[tuple[int, float]]]]]:
    """Each run folder with its ``{field: [(step, value)]}`` on one step axis: a later stage's
    steps counted from its initial checkpoint's, and the earlier stage cut there."""
    stages: list[tuple[Path, dict[str, list[tuple[int, float]]]]] = []
    offset = end = 0  # where the stage before began and ended, on the joined axis
    for k, run_dir in enumerate(run_dirs):
        records = read_log(run_dir)
        if k > 0:
            offset += stage_start(run_dir, end - offset)
            earlier, series = stages[-1]
            stages[-1] = (earlier, {f: [(s, v) for s, v in points if s <= offset] for f, points in series.items()})
        # A resumed run repeats the steps after its last checkpoint; the later record of a step wins.
        series = {
            field: sorted({offset + r["step"]: r[field] for r in records if isinstance(r.get(field), (int, float))}.items())
            for field, _, _ in PANELS
        }
        if not any(series.values()):
            raise PlotError(f"{run_dir / 'log.jsonl'}: no loss, val_psnr or lr records to draw")
        stages.append((run_dir, series))
        end = max(step for points in series.values() for step, _ in points)
    return stages


def plot_run(run_dirs: str | Path | Sequence[str | Path], output: str | Path | None = None) -> Path:
    """Draw a run's loss, validation PSNR and learning rate against step; returns the PNG
    (``curves.png`` in the last run folder unless ``output`` is given). Several run folders are
    the stages of one training, each started from a checkpoint of the one before: they are
    drawn on one step axis, each from the step its initial checkpoint holds. Panels without
    data say so."""
    try:
        import matplotlib
    except ImportError:
        raise PlotError("derain plot needs matplotlib: pip install 'derain[train]'") from None
    matplotlib.use("Agg")  # files only: no display, and the same on every machine
    from matplotlib import pyplot as plt

    run_dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    stages = joined_stages(run_dirs)
    output = Path(output) if output is not None else run_dirs[-1] / "curves.png"
    figure, axes = plt.subplots(len(PANELS), 1, sharex=True, figsize=(7, 8), constrained_layout=True)
    for axis, (field, title, logarithmic) in zip(axes, PANELS):
        axis.set_title(title, fontsize=10)
        axis.grid(True, alpha=0.3)
        drawn = [(k, run_dir, stage[field]) for k, (run_dir, stage) in enumerate(stages) if stage[field]]
        if not drawn:
            axis.text(0.5, 0.5, f"no {field} in log.jsonl", ha="center", va="center", transform=axis.transAxes)
            continue
        for k, run_dir, points in drawn:  # one colour per stage in every panel
            steps, values = zip(*points)
            marker = "o" if len(points) < 20 else None
            axis.plot(steps, values, color=f"C{k}", marker=marker, markersize=3, label=run_dir.resolve().name)
        if logarithmic and min(v for _, _, points in drawn for _, v in points) > 0:
            axis.set_yscale("log")
        if len(stages) > 1:
            axis.legend(fontsize=8)
    axes[-1].set_xlabel("step")
    figure.suptitle(" + ".join(run_dir.resolve().name for run_dir in run_dirs))
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
