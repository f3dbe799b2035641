"""PReNet's official weights beside derain models, on derain-synth's held-out rain and real photos.

PReNet (Ren et al., CVPR 2019, csdwren/PReNet) is a 0.17 M-parameter recurrent network whose
authors also released weights for real rain (``logs/real/PReNet1.pth``, ``PReNet2.pth``). The
official code is not part of derain: pass a checkout with ``--prenet``. Each weight file runs in
the network its official test script builds for it, fed as that script feeds it (RGB in [0, 1],
whole image, output clamped to [0, 1]):

- ``logs/real/*.pth``: ``test_real.py``, i.e. ``generator.Generator_lstm(recurrent_iter=4)``, a
  variant whose last convolution gives the image itself (no skip from the input);
- ``logs/<set>/PReNet6/*.pth``: ``test_PReNet.py``, i.e. ``networks.PReNet(recurrent_iter=6)``.

Loading those weights into the wrong one of the two classes succeeds (same parameter names) and
gives nonsense, so the choice is made here from the path, as the official scripts make it.

For each model: mean PSNR/SSIM under the ``rain100`` protocol (Y channel,
:func:`derain.metrics.psnr_ssim_matlab`) on derain-synth's test presets and held-out rain
families, beside the rainy input; with ``--real``, mean NIQE/BRISQUE of real rainy photos and of
each model's results, overall and per kind of rain when a ``MANIFEST.tsv`` (``file`` and
``kind`` columns) lies in or beside the folder; with ``--strips``, ``input | model ...`` strips
of every photo (:mod:`real_photos`'s). derain models run as ``derain run`` runs them (the card's
tiles); PReNet whole images up to ``PRENET_TILE`` pixels a side, larger photos in overlapping
tiles. With ``--outputs``, every restored image is written there and read back instead of
recomputed on a later run, so a long run can be resumed or extended. Reported, never asserted.

    OMP_NUM_THREADS=2 python benchmarks/prenet_baseline.py --prenet ../PReNet \\
        --benchmark $CORPUS/derain-synth --real REAL_PHOTOS --derain derain-synth RUN/best.pth \\
        --outputs prenet_outputs --strips prenet_strips --json prenet.json
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import re
import sys
import time
import types
from pathlib import Path

import derain.cpu

derain.cpu.tune()  # this script owns its process: the derain command's settings, before torch starts

import numpy as np
import torch
from torch import nn

from derain.checkpoint import load_checkpoint
from derain.data.pairing import list_images, pair_folders
from derain.data.synth import FAMILIES
from derain.imageio import read_rgb8, write_image
from derain.inference import Deraining, inference_card
from derain.metrics import psnr_ssim_matlab
from derain.pretrained import PRESETS

from default_model_speed import CORPUS  # the sibling scripts in this folder
from real_photos import CROP, centre_crop, load, scores, strip

DEFAULT_WEIGHTS = ["logs/real/PReNet1.pth", "logs/real/PReNet2.pth"]
# PReNet's receptive field grows by about 13 pixels a side per recurrent stage (13 3x3 convolutions),
# so 4-6 stages see about 52-78 pixels: tiles sharing 128 blend away their borders.
PRENET_TILE = 1024
PRENET_OVERLAP = 128
KINDS = ("day", "night", "dense", "drizzle", "fog", "drops", "splashes")


class PReNetOutput(nn.Module):
    """An official PReNet network as derain's inference calls a model: the final stage's image,
    clamped to [0, 1] as the official test scripts clamp it (the network returns it with the
    list of every stage's image)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, rainy: torch.Tensor) -> torch.Tensor:
        restored, _stages = self.network(rainy)
        return restored.clamp(0, 1)


def official_class(weights: str) -> tuple[str, str, int]:
    """(module, class, recurrent stages) that PReNet's own test script builds for ``weights``."""
    parts = Path(weights).parts
    if "real" in parts:  # test_real.py / test_real.sh
        return "generator", "Generator_lstm", 4
    if Path(weights).parent.name == "PReNet6":  # test_PReNet.py / test_Rain*.sh
        return "networks", "PReNet", 6
    raise SystemExit(f"{weights}: no official test script of PReNet known for it here; "
                     "known: logs/real/*.pth (Generator_lstm, 4 stages), logs/<set>/PReNet6/*.pth (PReNet, 6 stages)")


def load_prenet(checkout: Path, weights: str) -> nn.Module:
    """The official network for ``weights`` with them loaded, on the CPU, wrapped by :class:`PReNetOutput`."""
    # networks.py and generator.py import torchvision and cv2 at the top but never use them;
    # empty stand-ins let them import where neither is installed (derain needs neither).
    for unused in ("torchvision", "cv2"):
        sys.modules.setdefault(unused, types.ModuleType(unused))
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    module, cls, stages = official_class(weights)
    network = getattr(importlib.import_module(module), cls)(recurrent_iter=stages, use_GPU=False)
    # load_checkpoint maps the CUDA tensors of these files to the CPU and drops ``module.`` prefixes.
    return PReNetOutput(load_checkpoint(checkout / weights, network)).eval()


def prenet_label(weights: str) -> str:
    """``PReNet real/PReNet1``, ``PReNet Rain100H/PReNet6``: the training data and the file."""
    path = Path(weights).with_suffix("")
    parts = [p for p in path.parts if p != "logs"]
    if parts[-1] == "net_latest":
        parts = parts[:-1]
    return "PReNet " + "/".join(parts)


def derainers(args) -> dict[str, Deraining]:
    """Every model to compare, by label: PReNet's weights, then derain's models."""
    models = {}
    for weights in args.weights:
        models[prenet_label(weights)] = Deraining(
            load_prenet(args.prenet, weights), tile=PRENET_TILE, overlap=PRENET_OVERLAP, device="cpu"
        )
    for name in args.derain:
        model = load(name)
        card = inference_card(model)
        label = Path(name).name.removesuffix(".pth") if Path(name).exists() else name
        models[label] = Deraining(model, tile=card.tile, overlap=card.overlap, device="cpu")
    return models


def restored_image(derainer: Deraining, rainy: np.ndarray, cache: Path | None) -> np.ndarray:
    """``derainer(rainy)`` as 8-bit RGB, read from ``cache`` when an earlier run wrote it there."""
    if cache is not None and cache.exists():
        return read_rgb8(cache)
    restored = derainer(rainy)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_image(cache, restored)
    return restored


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)


def set_scores(models: dict[str, Deraining], folder: Path, limit: int | None, outputs: Path | None) -> dict:
    """Mean rain100 PSNR/SSIM of the rainy inputs and of every model over one folder of pairs."""
    pairs = pair_folders(folder / "input", folder / "target")[:limit]
    rows: dict[str, list[tuple[float, float]]] = {"input": [], **{label: [] for label in models}}
    for pair in pairs:
        rainy, clean = read_rgb8(pair.input), read_rgb8(pair.target)
        rows["input"].append(psnr_ssim_matlab(rainy, clean, protocol="rain100"))
        for label, derainer in models.items():
            cache = outputs / slug(label) / folder.name / f"{Path(pair.input).stem}.png" if outputs else None
            rows[label].append(psnr_ssim_matlab(restored_image(derainer, rainy, cache), clean, protocol="rain100"))
    return {
        label: {"psnr": float(np.mean([r[0] for r in found])), "ssim": float(np.mean([r[1] for r in found])), "images": len(found)}
        for label, found in rows.items()
    }


def photo_kinds(manifest: Path | None) -> dict[str, list[str]]:
    """Kinds of rain of each photo by file stem (``dense,day (side-by-side pair)`` -> dense, day)."""
    if manifest is None or not manifest.exists():
        return {}
    with manifest.open(newline="") as f:  # plain TSV, no quoting (licence cells hold literal quotes)
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return {
        Path(row["file"]).stem: [re.sub(r"\(.*", "", kind).strip() for kind in re.sub(r"\([^)]*\)", "", row["kind"]).split(",")]
        for row in rows
    }


def real_scores(models: dict[str, Deraining], folder: Path, kinds: dict[str, list[str]], limit: int | None,
                outputs: Path | None, strips: Path | None) -> dict:
    """NIQE/BRISQUE of each real photo and of every model's result, their means, and means per kind."""
    per_photo = {}
    for path in list_images(folder)[:limit]:
        started = time.perf_counter()
        rainy = read_rgb8(path)
        images = {"input": rainy}
        for label, derainer in models.items():
            cache = outputs / slug(label) / "real" / f"{path.stem}.png" if outputs else None
            images[label] = restored_image(derainer, rainy, cache)
        # derived crops (didmdn_github_3_lefthalf) carry the kinds of the photo they were cut from
        stem = re.sub(r"_lefthalf$", "", path.stem)
        per_photo[path.name] = {"kinds": kinds.get(stem, []), **{label: scores(image) for label, image in images.items()}}
        if strips is not None:
            strip(list(images.values()), list(images)).save(strips / f"{path.stem}_whole.jpg", quality=90)
            strip([centre_crop(image, CROP) for image in images.values()], list(images)).save(strips / f"{path.stem}_crop.png")
        print(f"  {path.name} ({time.perf_counter() - started:.0f} s)", flush=True)
    labels = ["input", *models]

    def means(names: list[str]) -> dict:
        return {
            label: {
                metric: float(np.nanmean([_number(per_photo[n][label][metric]) for n in names]))
                for metric in ("niqe", "brisque")
            } | {"photos": len(names)}
            for label in labels
        }

    result = {"mean": means(list(per_photo)), "per_kind": {}, "per_photo": per_photo}
    for kind in KINDS:
        names = [n for n, row in per_photo.items() if kind in row["kinds"]]
        if names:
            result["per_kind"][kind] = means(names)
    return result


def _number(value: float | None) -> float:
    """A score, or NaN where the metric could not score the image."""
    return float("nan") if value is None else value


def print_tables(results: dict) -> None:
    labels = ["input", *results["models"]]
    header = "| | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels)
    for part, title in (("presets", "derain-synth test presets"), ("families", "held-out rain families (derain-synth families/)")):
        if not results[part]:
            continue
        print(f"\n{title}: PSNR / SSIM, rain100 protocol (Y), mean over {results['images_per_set']} pairs a set\n{header}")
        for name, row in results[part].items():
            print(f"| {name} | " + " | ".join(f"{row[l]['psnr']:.2f} / {row[l]['ssim']:.3f}" for l in labels) + " |")
    if results.get("real"):
        real = results["real"]
        print(f"\nreal rainy photos: NIQE / BRISQUE (lower is better)\n{header}")
        for name, row in {"all": real["mean"], **real["per_kind"]}.items():
            count = row["input"]["photos"]
            print(f"| {name} ({count}) | " + " | ".join(f"{row[l]['niqe']:.2f} / {row[l]['brisque']:.1f}" for l in labels) + " |")
        print(f"\nper photo: NIQE / BRISQUE; a photo's kinds in brackets\n{header}")
        for name, row in real["per_photo"].items():
            cells = [f"{_number(row[l]['niqe']):.2f} / {_number(row[l]['brisque']):.1f}" for l in labels]
            print(f"| {name} ({', '.join(row['kinds'])}) | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prenet", type=Path, required=True, metavar="CHECKOUT", help="a checkout of csdwren/PReNet")
    parser.add_argument("--weights", nargs="+", default=DEFAULT_WEIGHTS, help="weight files relative to the checkout")
    parser.add_argument("--benchmark", type=Path, default=CORPUS / "derain-synth", help="derain-synth's root (test/ and families/)")
    parser.add_argument("--sets", nargs="+", default=[*PRESETS, *FAMILIES], help="presets and families to score, in this order")
    parser.add_argument("--real", type=Path, help="a folder of real rainy photos (NIQE/BRISQUE only; never trained on)")
    parser.add_argument("--manifest", type=Path, help="TSV with file and kind columns (default: MANIFEST.tsv in or beside --real)")
    parser.add_argument("--derain", nargs="*", default=[], metavar="MODEL", help="derain pretrained tags or checkpoints")
    parser.add_argument("--limit", type=int, help="at most this many images a set (and real photos), for a smoke run")
    parser.add_argument("--outputs", type=Path, help="write restored images here, and reuse those found there")
    parser.add_argument("--strips", type=Path, help="folder for before/after strips of the real photos")
    parser.add_argument("--json", type=Path, help="write the results here (after every set, so a stopped run leaves them)")
    args = parser.parse_args()
    unknown = [s for s in args.sets if s not in (*PRESETS, *FAMILIES)]
    if unknown:
        parser.error(f"unknown sets {unknown}; known: {', '.join((*PRESETS, *FAMILIES))}")

    models = derainers(args)
    results = {"protocol": "rain100", "models": list(models), "images_per_set": args.limit or "all",
               "threads": torch.get_num_threads(), "prenet_tile": PRENET_TILE, "prenet_overlap": PRENET_OVERLAP,
               "presets": {}, "families": {}, "real": {}}

    def save() -> None:
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")

    for name in args.sets:
        started = time.perf_counter()
        part, folder = ("presets", args.benchmark / "test" / name) if name in PRESETS else ("families", args.benchmark / "families" / name)
        results[part][name] = set_scores(models, folder, args.limit, args.outputs)
        print(f"{name}: " + ", ".join(f"{l} {s['psnr']:.2f}" for l, s in results[part][name].items())
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
        save()
    if args.real is not None:
        manifest = args.manifest or next((m for m in (args.real / "MANIFEST.tsv", args.real.parent / "MANIFEST.tsv") if m.exists()), None)
        if args.strips is not None:
            args.strips.mkdir(parents=True, exist_ok=True)
        results["real"] = real_scores(models, args.real, photo_kinds(manifest), args.limit, args.outputs, args.strips)
        save()
    print_tables(results)
    if args.json is not None:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
