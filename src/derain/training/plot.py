"""Training curves from a run folder's ``log.jsonl``: loss, validation PSNR and learning rate.

``log.jsonl`` is the record of a run whatever trackers were on; this draws it to one PNG with
matplotlib's Agg backend (no display needed), for people who would rather look than read JSON.
Needs matplotlib (the ``train`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Draw ``run_dir``'s loss, validation PSNR and learning rate against step; returns the PNG
    (``RUN_DIR/curves.png`` unless ``output`` is given). Panels without data say so."""
    try:
        import matplotlib
    except ImportError:
        raise PlotError("derain plot needs matplotlib: pip install 'derain[train]'") from None
    matplotlib.use("Agg")  # files only: no display, and the same on every machine
    from matplotlib import pyplot as plt

    records = read_log(run_dir)
    # A resumed run repeats the steps after its last checkpoint; the later record of a step wins.
    series = {
        field: sorted({r["step"]: r[field] for r in records if isinstance(r.get(field), (int, float))}.items())
        for field, _, _ in PANELS
    }
    if not any(series.values()):
        raise PlotError(f"{Path(run_dir) / 'log.jsonl'}: no loss, val_psnr or lr records to draw")
    output = Path(output) if output is not None else Path(run_dir) / "curves.png"
    figure, axes = plt.subplots(len(PANELS), 1, sharex=True, figsize=(7, 8), constrained_layout=True)
    for axis, (field, title, logarithmic) in zip(axes, PANELS):
        points = series[field]
        axis.set_title(title, fontsize=10)
        axis.grid(True, alpha=0.3)
        if not points:
            axis.text(0.5, 0.5, f"no {field} in log.jsonl", ha="center", va="center", transform=axis.transAxes)
            continue
        steps, values = zip(*points)
        axis.plot(steps, values, marker="o" if len(points) < 20 else None, markersize=3)
        if logarithmic and min(values) > 0:
            axis.set_yscale("log")
    axes[-1].set_xlabel("step")
    figure.suptitle(Path(run_dir).resolve().name)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
