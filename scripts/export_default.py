"""Export a checkpoint of the default-model run as the shipped pretrained default.

Writes ``src/derain/pretrained/<tag>.safetensors`` and its card ``<tag>.json``
(:func:`derain.pretrained.save_pretrained`) from three inputs: the checkpoint (default: the last
stage's ``best.pth``, the best validation PSNR), the run folders (their ``log.jsonl`` give the
steps and the training wall time), and the scores written by ``benchmarks/default_model.py --json``
on the derain-synth test presets, its held-out rain families and real rainy photos. A model that
makes any preset or family worse than the rainy input is refused: it is never shipped.

    FINAL=$RUN_DIR-near/checkpoints/step_00001100.ema.pth
    python benchmarks/default_model.py --checkpoint $FINAL --real REAL_PHOTOS --json scores.json
    python scripts/export_default.py --checkpoint $FINAL --scores scores.json --real-photos "..."

Training runs in eight stages (``RUN_DIR``, ``RUN_DIR-finish``, ``RUN_DIR-presets``,
``RUN_DIR-storm``, ``RUN_DIR-storm-balance``, ``RUN_DIR-downpour``,
``RUN_DIR-downpour-balance``, ``RUN_DIR-near``); steps and wall time add
them up. Where the earlier run folders are gone and a stage started from a shipped model's
weights, ``--run-dir`` names the later folders only and ``--from-card TAG`` adds the steps and
wall time of that model's card. ``RUN_DIR`` and ``CORPUS`` are the variables of
``scripts/train_default.sh`` (defaults ``runs/derain-mixed`` and ``corpus``, relative to the
current folder).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from pathlib import Path

import torch

from derain.checkpoint import load_checkpoint
from derain.pretrained import DEFAULT_TAG, PRESETS, PRETRAINED_DIR, pretrained_card, save_pretrained
from derain.training import load_config
from derain.training.plot import read_log
from derain.training.run_state import weights_step

REPO = Path(__file__).resolve().parents[1]
COMMAND = "OMP_NUM_THREADS=2 scripts/train_default.sh"
RECIPE = (
    "configs/derain-mixed.yaml (stage 1), then configs/derain-mixed-finish.yaml (stage 2), then "
    "configs/derain-mixed-presets.yaml (stage 3; derain-mixed), then configs/derain-storm.yaml (stage 4), then "
    "configs/derain-storm-balance.yaml (stage 5; derain-storm), then configs/derain-downpour.yaml (stage 6), then "
    "configs/derain-downpour-balance.yaml (stage 7; derain-downpour), then configs/derain-near.yaml (stage 8; "
    "derain-near), each from the EMA weights of the one before"
)
DATA = (
    "derain's mixed rain (derain.data.synth: the light/medium/heavy presets and the jorder, ddn, drizzle, "
    "drops, splashes, night, fog and camera families, one drawn per pair, plus drops, fog and the camera's "
    "part on some) on the corpus's 56 train photos at short sides 360/480/640, 6 pairs per photo and "
    "scale, each with a random crop, exposure, gamma and saturation change (1 in 8 strongly blurred); "
    "fine-tuned from derain-synth; in stage 2 a third of the pairs are the light/medium/heavy presets "
    "(derain-synth's training pairs and 2 more per photo and preset at short side 480), in stage 3 three "
    "fifths; in stage 4 a quarter are the storm family (dense long thin streaks, 3 pairs per photo at short side "
    "480 and 2 at 640) and one in twenty a clean photo paired with itself; stage 5 draws from all of these, "
    "mixed rain at all three scales and 2 DDN-style pairs per photo; stage 6 draws from the jorder family "
    "(crossing layers, 3 pairs per photo at 480 and 2 at 640), the downpour family (storm's streaks over "
    "drizzle's), mixed rain over photos with thin lines drawn into both sides (--scene-lines) and storm rain "
    "(3 pairs per photo at 480 each), and DDN-style, derain-synth preset and clean pairs, flipped but never "
    "rotated (rain stays near vertical); stage 7 the same families at 480 without scene lines, with the "
    "presets at twice the share; stage 8 adds the near family (wide, soft, faint streaks at a slant over "
    "finer rain, through a camera's noise and JPEG; 3 pairs per photo at 480 and 2 at 640, a fifth of the "
    "pairs) to stage 7's; validated on the "
    "corpus's 8 val photos under mixed rain (stage 3 also under the presets, stage 4 also under storm, stage 5 "
    "also under DDN-style rain, stages 6 and 7 also under JORDER-style rain and downpour, stage 8 also "
    "under near rain), never on "
    "derain-synth test, its families split or any published benchmark"
)


def checkpoint_step(run_dir: Path, checkpoint: Path) -> int:
    """The step ``checkpoint`` holds: from its name, or for ``best.pth`` the best validation step."""
    if (step := weights_step(checkpoint)) is not None:
        return step
    validations = [r for r in read_log(run_dir) if "val_psnr" in r]
    if not validations:
        raise SystemExit(f"{run_dir}/log.jsonl has no validation: cannot tell which step {checkpoint} holds")
    return max(validations, key=lambda r: r["val_psnr"])["step"]


def trained_steps_and_seconds(run_dirs: list[Path], checkpoint: Path) -> tuple[int, float]:
    """Steps and training seconds over the stages up to ``checkpoint`` (in the last stage); each
    earlier stage counts up to the checkpoint the next stage started from (its ``model.init``)."""
    ends = [Path(load_config(d / "config.yaml", check_paths=False).model.init or "") for d in run_dirs[1:]]
    steps, seconds = 0, 0.0
    for run_dir, end in zip(run_dirs, [*ends, checkpoint]):
        step = checkpoint_step(run_dir, end)
        steps += step
        seconds += sum(r["seconds"] for r in read_log(run_dir) if "seconds" in r and r["step"] <= step)
    return steps, seconds


def photo_licences(licences_tsv: Path, split: str = "train") -> str:
    """A count of the licences of the corpus photos of ``split`` (the ones trained on)."""
    with licences_tsv.open(encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f, delimiter="\t") if row["file"].startswith(f"{split}/")]
    counts = Counter(row["licence"] for row in rows)
    listing = ", ".join(f"{licence} ({n})" for licence, n in counts.most_common())
    return (
        f"{len(rows)} photos from Debian wallpaper/artwork packages: {listing}; per-photo licence, "
        "package and copyright file in derain/data/clean_photos.tsv"
    )


def check_never_worse(scores: dict, input_scores: dict) -> None:
    worse = [p for p in scores if scores[p]["psnr"] <= input_scores[p]["psnr"] or scores[p]["ssim"] <= input_scores[p]["ssim"]]
    if worse:
        raise SystemExit(f"refusing to export: the model makes {', '.join(worse)} rain worse than the rainy input")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run_dir = os.environ.get("RUN_DIR", "runs/derain-mixed")
    parser.add_argument(
        "--run-dir", type=Path, nargs="+",
        default=[Path(run_dir), *(Path(f"{run_dir}-{stage}") for stage in ("finish", "presets", "storm", "storm-balance", "downpour", "downpour-balance", "near"))],
        help="the run folders of the training stages, in order (default RUN_DIR and its -finish, -presets, -storm, -storm-balance, -downpour, -downpour-balance, -near)",
    )
    parser.add_argument("--from-card", metavar="TAG", help="the first run folder started from this shipped model: add its card's steps and wall time")
    parser.add_argument("--working-size", type=int, default=480, help="the card's working size (default 480, the training scale; 0: none)")
    parser.add_argument("--checkpoint", type=Path, help="default: the last stage's best.pth")
    parser.add_argument("--scores", type=Path, required=True, help="JSON of benchmarks/default_model.py for this checkpoint")
    parser.add_argument("--photos", type=Path, default=Path(os.environ.get("CORPUS", "corpus")) / "photos", help="the corpus (its LICENSES.tsv)")
    parser.add_argument("--out", type=Path, default=PRETRAINED_DIR)
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--hardware", default="2 shared CPU cores, float32")
    parser.add_argument("--real-photos", default="", help="what the real photos of the scores are (count, source, licence)")
    args = parser.parse_args()

    checkpoint = args.checkpoint or args.run_dir[-1] / "best.pth"
    measured = json.loads(args.scores.read_text())
    if Path(measured["model"]).resolve() != checkpoint.resolve():
        print(f"warning: {args.scores} measured {measured['model']}, not {checkpoint}", file=sys.stderr)
    check_never_worse(measured["scores"], measured["input_scores"])
    check_never_worse(measured["family_scores"], measured["family_input_scores"])
    config = load_config(args.run_dir[-1] / "config.yaml", check_paths=False)
    model = load_checkpoint(checkpoint)
    if type(model).__name__.lower() != config.model.name:
        raise SystemExit(f"{checkpoint} holds a {type(model).__name__}, but the run trained {config.model.name}")
    steps, seconds = trained_steps_and_seconds(args.run_dir, checkpoint)
    if args.from_card:
        earlier = pretrained_card(args.from_card)
        steps, seconds = steps + earlier.steps, seconds + earlier.wall_time_s
    model = model.float()
    card = save_pretrained(
        model,
        args.out,
        tag=args.tag,
        architecture=config.model.name,
        config=dict(config.model.config),
        data=DATA,
        data_licence="the synthetic pairs are derivatives of the corpus photos and keep their licences",
        photo_licences=photo_licences(args.photos / "LICENSES.tsv"),
        recipe=RECIPE,
        command=COMMAND,
        steps=steps,
        wall_time_s=round(seconds, 1),
        hardware=args.hardware,
        scores={p: measured["scores"][p] for p in PRESETS},
        input_scores={p: measured["input_scores"][p] for p in PRESETS},
        median_filter_scores={p: measured["median5_scores"][p] for p in PRESETS},
        seconds_per_megapixel=round(measured["seconds_per_megapixel"], 2),
        speed_setting=measured["speed_setting"],
        family_scores=measured["family_scores"],
        family_input_scores=measured["family_input_scores"],
        family_median_filter_scores=measured["family_median5_scores"],
        real_photo_scores=measured["real_photo_scores"],
        real_photos=args.real_photos,
        working_size=args.working_size or None,
    )
    params = sum(p.numel() for p in model.parameters())
    print(f"{card.weights} ({card.size_bytes / 2**20:.1f} MB, {params / 1e6:.2f} M parameters, torch {torch.__version__})")
    print(card.summary())


if __name__ == "__main__":
    main()
