"""Training: configuration, losses, schedules, paired datasets and the loop (CPU, tiny models)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import derain
from derain.checkpoint import read_state_dict
from derain.data.paired import BadPairsError, PairedImageDataset, TrainingBatches, pair_folder_lists
from derain.data.pairing import pair_folders
from derain.training import (
    ConfigError,
    CosineAnnealingRestartCyclicLR,
    EdgeLoss,
    MultiScaleL1FFTLoss,
    TrainingError,
    WarmupCosineLR,
    charbonnier,
    load_config,
    train,
)
from derain.training import loop as training_loop

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_DRSFORMER = {"dim": 8, "num_blocks": [1, 1, 1, 1], "heads": [1, 2, 2, 4], "mefc": False}


def make_pairs(root: Path, n: int = 8, size: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """Smooth clean images and the same with bright vertical streaks ("rain")."""
    rng = np.random.default_rng(seed)
    rainy_dir, clean_dir = root / "input", root / "target"
    rainy_dir.mkdir(parents=True)
    clean_dir.mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        a, b = rng.uniform(0.2, 0.8, 3), rng.uniform(-0.3, 0.3, 3)
        clean = np.clip(a + b * xx[..., None] + b[::-1] * yy[..., None], 0, 1)
        rainy = clean.copy()
        columns = rng.choice(size, size // 4, replace=False)
        rainy[:, columns] = np.clip(rainy[:, columns] + 0.4, 0, 1)
        Image.fromarray((clean * 255).round().astype(np.uint8)).save(clean_dir / f"{i:03d}.png")
        Image.fromarray((rainy * 255).round().astype(np.uint8)).save(rainy_dir / f"{i:03d}.png")
    return rainy_dir, clean_dir


def tiny_config(tmp_path: Path, data: tuple[Path, Path], **train) -> dict:
    rainy_dir, clean_dir = data
    return {
        "model": {"name": "drsformer", "config": dict(TINY_DRSFORMER)},
        "data": {
            "train_input": str(rainy_dir), "train_target": str(clean_dir),
            "val_input": str(rainy_dir), "val_target": str(clean_dir),
            "patch_size": 16, "workers": 0,
        },
        "optim": {"name": "adamw", "lr": 2e-3},
        "train": {
            "run_dir": str(tmp_path / "run"), "batch_size": 4, "iterations": 6, "val_every": 1000,
            "checkpoint_every": 2, "keep_last": 2, "log_every": 1, "progress_bar": False, **train,
        },
    }


@pytest.fixture
def pairs(tmp_path):
    return make_pairs(tmp_path / "data")


def weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return read_state_dict(run_dir / "checkpoints" / f"step_{step:08d}.pth")[0]


# --- configuration --------------------------------------------------------------------------


def test_config_unknown_key_is_named(tmp_path, pairs):
    raw = tiny_config(tmp_path, pairs)
    raw["optim"]["learning_rate"] = 1e-3
    with pytest.raises(ConfigError, match=r"unknown key optim\.learning_rate"):
        load_config(raw)


def test_config_wrong_type_is_named(tmp_path, pairs):
    with pytest.raises(ConfigError, match=r"train\.batch_size must be int, got 'sixteen'"):
        load_config(tiny_config(tmp_path, pairs), ["train.batch_size=sixteen"])


def test_config_missing_data_folder_is_named(tmp_path, pairs):
    raw = tiny_config(tmp_path, pairs)
    raw["data"]["train_target"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"data\.train_target: folder not found: .*nowhere"):
        load_config(raw)


def test_config_file_overrides_and_record(tmp_path, pairs):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, pairs)))
    config = load_config(path, ["model.config.dim=16", "optim.lr=1e-4", "data.val_crop=null"])
    assert config.model.config["dim"] == 16 and config.optim.lr == 1e-4 and config.data.val_crop is None
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path, ["data.augment=mixup"])


def test_mixed_precision_no_survives_yaml(tmp_path, pairs):
    # YAML 1.1 reads an unquoted no as False, in a file and in --set alike
    assert load_config(tiny_config(tmp_path, pairs), ["train.mixed_precision=no"]).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match="train.mixed_precision must be one of"):
        load_config(tiny_config(tmp_path, pairs), ["train.mixed_precision=true"])


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "drsformer", "drsformer_nomefc", "cpraformer", "dmsr", "ddsaformer",
    "derain-synth", "derain-mixed", "derain-mixed-finish", "derain-mixed-presets", "derain-storm", "derain-storm-balance",
    "derain-downpour", "derain-downpour-balance", "derain-near",
])
def test_recipe_values_and_tiny_start(tmp_path, pairs, name):
    """Every shipped recipe validates, and starts on CPU with tiny overrides."""
    rainy_dir, clean_dir = make_pairs(tmp_path / "big", n=4, size=64) if name == "dmsr" else pairs
    recipe = load_config(CONFIGS / f"{name}.yaml", check_paths=False)
    model = recipe.model.name
    patch = 64 if model == "dmsr" else 16
    tiny = {**derain.model_card(model).tiny_config, **recipe.model.config}
    overrides = [f"model.config={yaml.safe_dump(tiny, default_flow_style=True).strip()}"]
    overrides += [f"data.{key}={folder}" for key, folder in [
        ("train_input", rainy_dir), ("train_target", clean_dir), ("val_input", rainy_dir), ("val_target", clean_dir)]]
    overrides += [f"data.patch_size={patch}", "data.workers=0", "data.val_crop=null", "train.batch_size=2",
                  f"train.run_dir={tmp_path / 'run'}", "train.progress_bar=false", "model.init=null"]
    overrides += ["train.epochs=4"] if recipe.train.epochs else ["train.iterations=1"]
    config = load_config(CONFIGS / f"{name}.yaml", overrides)
    run_dir = train(config)
    steps = config.train.iterations or 4 * (len(list(rainy_dir.iterdir())) // 2)
    assert (run_dir / "checkpoints" / f"step_{steps:08d}.state.pt").is_file()
    assert load_config(run_dir / "config.yaml").model.config == tiny


def test_model_arguments_can_be_set_directly(tmp_path, pairs):
    config = load_config(tiny_config(tmp_path, pairs), ["model.dim=4", "model.mefc=false"])
    assert config.model.config["dim"] == 4 and config.model.config["mefc"] is False
    with pytest.raises(ConfigError, match=r"model\.config\.width is not an argument of drsformer \(it takes inp_channels"):
        load_config(tiny_config(tmp_path, pairs), ["model.width=4"])


def test_recipe_values_match_the_papers():
    drs = load_config(CONFIGS / "drsformer.yaml", check_paths=False)
    assert (drs.optim.name, drs.optim.lr, drs.optim.grad_clip, drs.train.batch_size) == ("adamw", 3e-4, 0.01, 16)
    assert drs.schedule.periods == [92000, 208000] and drs.train.iterations == 300000
    cpra = load_config(CONFIGS / "cpraformer.yaml", check_paths=False)
    assert (cpra.optim.name, cpra.optim.lr, cpra.train.batch_size, cpra.data.patch_size) == ("adam", 2e-4, 12, 64)
    assert (cpra.train.epochs, cpra.schedule.warmup_epochs, cpra.loss.name) == (300, 3, "charbonnier_edge")
    assert load_config(CONFIGS / "dmsr.yaml", check_paths=False).loss.name == "multiscale_l1_fft"
    assert load_config(CONFIGS / "drsformer_nomefc.yaml", check_paths=False).model.config == {"mefc": False}


def test_config_takes_lists_of_folders_paired_by_position(tmp_path, pairs):
    light, heavy = make_pairs(tmp_path / "light", n=2), make_pairs(tmp_path / "heavy", n=3, seed=1)
    raw = tiny_config(tmp_path, pairs)
    raw["data"]["train_input"] = [str(light[0]), str(heavy[0])]
    raw["data"]["train_target"] = [str(light[1]), str(heavy[1])]
    config = load_config(raw)
    assert config.data.train_input == [str(light[0]), str(heavy[0])] and config.data.val_input == str(pairs[0])
    raw["data"]["train_target"] = [str(light[1])]
    with pytest.raises(ConfigError, match=r"data\.train_input lists 2 folders but data\.train_target 1"):
        load_config(raw)
    raw["data"]["train_target"] = [str(light[1]), str(tmp_path / "nowhere")]
    with pytest.raises(ConfigError, match=r"data\.train_target: folder not found: .*nowhere"):
        load_config(raw)
    raw["data"]["train_target"] = [str(light[1]), 7]
    with pytest.raises(ConfigError, match=r"data\.train_target\[1\] must be str, got 7"):
        load_config(raw)


def test_folder_lists_prefix_names_so_same_stems_stay_distinct(tmp_path):
    light, heavy = make_pairs(tmp_path / "light", n=2), make_pairs(tmp_path / "heavy", n=3, seed=1)
    pairs = pair_folder_lists([light[0], heavy[0]], [light[1], heavy[1]])
    assert [p.name for p in pairs] == [
        "light/input/000", "light/input/001", "heavy/input/000", "heavy/input/001", "heavy/input/002"]
    assert pairs[2].input == heavy[0] / "000.png" and pairs[2].target == heavy[1] / "000.png"
    assert [p.name for p in pair_folder_lists(light[0], light[1])] == ["000", "001"]  # one folder: unchanged
    with pytest.raises(ValueError, match="listed more than once"):
        pair_folder_lists([light[0], light[0]], [light[1], light[1]])
    dataset = PairedImageDataset.from_folders([light[0], heavy[0]], [light[1], heavy[1]], patch_size=16)
    assert len(dataset) == 5 and dataset[(4, 0)]["name"] == "heavy/input/002"


def test_first_default_recipe_mixes_the_three_presets():
    recipe = load_config(CONFIGS / "derain-synth.yaml", check_paths=False)
    assert [Path(f).parts[-2] for f in recipe.data.train_input] == ["light", "medium", "heavy"]
    assert all("derain-synth/train/" in f for f in recipe.data.train_input + recipe.data.train_target)
    assert not any("derain-synth/test" in f for f in recipe.data.val_input)  # the test set stays held out
    model = derain.create_model(recipe.model.name, **recipe.model.config)
    assert sum(p.numel() for p in model.parameters()) * 4 < 20 * 2**20  # ships in <= 20 MB


def test_default_recipe_trains_on_mixed_rain_and_never_on_test_photos():
    recipe = load_config(CONFIGS / "derain-mixed.yaml", check_paths=False)
    folders = recipe.data.train_input + recipe.data.train_target + [recipe.data.val_input, recipe.data.val_target]
    assert all("mixed-" in f for f in folders) and not any("test" in f or "derain-synth/" in f for f in folders)
    first = load_config(CONFIGS / "derain-synth.yaml", check_paths=False)
    assert (recipe.model.name, recipe.model.config) == (first.model.name, first.model.config)  # the same speed
    script = (CONFIGS.parent / "scripts" / "train_default.sh").read_text()
    assert 'mixed-train/s*) synth "$out" mixed ' in script and "split=train" in script and "split=val" in script
    for stage in ("derain-mixed-finish", "derain-mixed-presets", "derain-storm", "derain-storm-balance", "derain-downpour", "derain-downpour-balance", "derain-near"):  # later stages: same model, no test photo
        later = load_config(CONFIGS / f"{stage}.yaml", check_paths=False)
        val = later.data.val_input if isinstance(later.data.val_input, list) else [later.data.val_input]
        assert (later.model.name, later.model.config) == (first.model.name, first.model.config)
        assert not any("test" in f for f in later.data.train_input + later.data.train_target + val), stage
        assert f"{stage}.yaml" in script


# --- losses and schedules -------------------------------------------------------------------


def test_config_allows_exactly_what_the_builders_build():
    """One table per choice: the config's allowed values are the builders' keys."""
    import typing

    from derain.data.paired import AUGMENTATIONS
    from derain.training import config
    from derain.training.losses import LOSSES
    from derain.training.schedules import SCHEDULES

    def allowed(cls, key):
        return typing.get_args(typing.get_type_hints(cls)[key])

    assert allowed(config.LossConfig, "name") == tuple(LOSSES)
    assert allowed(config.ScheduleConfig, "name") == tuple(SCHEDULES)
    assert allowed(config.DataConfig, "augment") == tuple(AUGMENTATIONS)


def test_charbonnier_and_edge_loss():
    x = torch.rand(2, 3, 16, 16)
    assert charbonnier(x, x).item() == pytest.approx(1e-3)
    assert charbonnier(x, x + 0.5).item() == pytest.approx(math.sqrt(0.25 + 1e-6), rel=1e-5)
    edge = EdgeLoss()
    flat = torch.full((1, 3, 16, 16), 0.5)
    assert edge(flat, flat).item() == pytest.approx(1e-3)
    detail = edge._detail(flat)  # pyramid detail of a flat image vanishes away from the borders
    assert detail[..., 4:-4, 4:-4].abs().max().item() < 1e-6 < detail.abs().max().item()
    assert edge(flat, torch.rand(1, 3, 16, 16)).item() > 0.05


def test_multiscale_fft_loss_uses_every_output():
    clean = torch.rand(1, 3, 64, 64)
    half = torch.nn.functional.interpolate(clean, scale_factor=0.5, mode="bilinear", align_corners=False)
    quarter = torch.nn.functional.interpolate(clean, scale_factor=0.25, mode="bilinear", align_corners=False)
    loss = MultiScaleL1FFTLoss(0.1)
    assert loss((clean, half, quarter), clean).item() == pytest.approx(0.0, abs=1e-5)
    assert loss((clean, half, quarter + 0.1), clean).item() > 0.1


def test_cyclic_cosine_is_drsformers_schedule():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=3e-4)
    schedule = CosineAnnealingRestartCyclicLR(optimizer, [92000, 208000], [1, 1], [3e-4, 1e-6])
    lr_at = {}
    for step in (0, 50000, 92000, 92000 + 104000, 300000):
        schedule.last_epoch = step
        lr_at[step] = schedule.get_lr()[0]
    assert lr_at[0] == lr_at[50000] == lr_at[92000] == pytest.approx(3e-4)
    assert lr_at[196000] == pytest.approx((3e-4 + 1e-6) / 2)
    assert lr_at[300000] == pytest.approx(1e-6)


def test_warmup_cosine_per_epoch():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
    schedule = WarmupCosineLR(optimizer, steps_per_epoch=10, epochs=300, warmup_epochs=3, eta_min=1e-6)
    lrs = []
    for _ in range(50):
        lrs.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert lrs[0] == lrs[9] == pytest.approx(2e-4 / 3) and lrs[10] == pytest.approx(4e-4 / 3)
    assert lrs[20] == lrs[30] == pytest.approx(2e-4) and lrs[40] < 2e-4


# --- paired data ----------------------------------------------------------------------------


def test_patches_pad_small_images_and_augment_both_images_alike(tmp_path):
    rainy_dir, clean_dir = make_pairs(tmp_path, n=2, size=12)
    pairs = pair_folders(rainy_dir, clean_dir)
    dataset = PairedImageDataset(pairs, patch_size=16, augment="flip_rot8", seed=3)
    full = dataset[0]
    seen = set()
    for draw in range(40):
        item = dataset[(0, draw)]
        assert item["rainy"].shape == item["clean"].shape == (3, 16, 16)
        # the streaks are the only difference: same positions after the same transform
        streaks = (item["rainy"] - item["clean"]).abs().sum(0) > 0.1
        assert streaks.all(0).any() or streaks.all(1).any()
        seen.add(item["rainy"].numpy().tobytes())
    assert len(seen) == 8  # padded to exactly the patch: one crop, the 8 transforms
    assert torch.equal(dataset[(0, 5)]["rainy"], dataset[(0, 5)]["rainy"])  # a draw is reproducible
    assert full["rainy"].shape == (3, 12, 12)


def test_training_batches_shard_the_global_batch():
    def keys(**kw):
        return [k for batch in TrainingBatches(20, global_batch=4, total_steps=7, seed=1, **kw) for k in batch]

    single = keys(device_batch=4)
    ranks = [keys(device_batch=1, rank=r, world=2) for r in range(2)]  # 2 processes, accumulation 2
    per_step = [single[i : i + 4] for i in range(0, len(single), 4)]
    assert [sorted(s) for s in per_step] == [
        sorted(ranks[0][2 * i : 2 * i + 2] + ranks[1][2 * i : 2 * i + 2]) for i in range(7)
    ]
    assert keys(device_batch=4, start_step=3) == single[12:]
    assert len({k[0] for k in single[:20]}) == 20  # one epoch visits every pair once


def test_unreadable_pair_is_named_or_skipped(tmp_path):
    rainy_dir, clean_dir = make_pairs(tmp_path, n=3)
    (rainy_dir / "001.png").write_bytes(b"not an image")
    with pytest.raises(BadPairsError, match=r"001\.png"):
        PairedImageDataset.from_folders(rainy_dir, clean_dir)
    with pytest.warns(UserWarning, match=r"skipping 1 of 3"):
        dataset = PairedImageDataset.from_folders(rainy_dir, clean_dir, skip_bad=True)
    assert [p.name for p in dataset.pairs] == ["000", "002"]


# --- the loop -------------------------------------------------------------------------------


@pytest.mark.slow
def test_loss_falls_and_validation_psnr_rises(tmp_path, pairs):
    config = load_config(tiny_config(tmp_path, pairs, iterations=24, val_every=4, checkpoint_every=24))
    run_dir = train(config)
    records = [yaml.safe_load(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    psnrs = [r["val_psnr"] for r in records if "val_psnr" in r]
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])
    assert psnrs[-1] > psnrs[0] + 1.0
    assert (run_dir / "best.pth").is_file()
    model = derain.load_checkpoint(run_dir / "best.pth")  # self-describing weights
    assert isinstance(model, torch.nn.Module)


@pytest.mark.slow
def test_gradient_accumulation_equals_the_full_batch(tmp_path, pairs):
    # Adam's eps = 1 keeps the update proportional to the gradient, so that float32 rounding
    # in near-zero gradients is not blown up to ±lr (what a tiny eps does after one step).
    near_sgd = ["optim.eps=1.0", "optim.lr=0.1"]
    full = train(load_config(tiny_config(tmp_path / "a", pairs, iterations=2), near_sgd))
    accumulated = train(load_config(tiny_config(tmp_path / "b", pairs, iterations=2, device_batch_size=1), near_sgd))
    assert_same_training(weights(full, 2), weights(accumulated, 2))


def test_bf16_autocast_trains_on_cpu(tmp_path, pairs, monkeypatch):
    """train.mixed_precision: bf16 on a CPU: Accelerate's autocast is on in the forward, the
    convolutions run in bfloat16, and the loss stays finite."""
    seen = []

    def create_model(*args, **kwargs):
        model = derain.create_model(*args, **kwargs)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda module, inputs, output: seen.append((output.dtype, torch.is_autocast_enabled("cpu"))))
        return model

    monkeypatch.setattr(training_loop, "create_model", create_model)
    run_dir = train(load_config(tiny_config(tmp_path, pairs, iterations=2, mixed_precision="bf16", val_every=1000)))
    losses = [json.loads(line)["loss"] for line in (run_dir / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert seen and seen[0] == (torch.bfloat16, True)


def assert_same_training(expected: dict, actual: dict) -> None:
    """Equal within float32 summation-order noise: scalar weights such as the attention
    temperatures get gradients that are sums of cancelling terms, whose float32 rounding
    depends on the batch split (in float64 the two agree to 1e-14)."""
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=1e-3, atol=1e-4, msg=key)


@pytest.mark.slow
def test_keep_last_resume_and_finetune_init(tmp_path, pairs):
    run_dir = train(load_config(tiny_config(tmp_path, pairs)))
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.state.pt")) == [
        "step_00000004.state.pt", "step_00000006.state.pt"]
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train(load_config(tiny_config(tmp_path, pairs)))
    raw = tiny_config(tmp_path, pairs)
    raw["model"]["init"] = str(run_dir / "checkpoints" / "step_00000006.pth")
    raw["train"]["run_dir"] = str(tmp_path / "finetune")
    raw["optim"]["lr"] = 1e-12
    finetuned = train(load_config(raw))
    for key, value in weights(run_dir, 6).items():
        torch.testing.assert_close(weights(finetuned, 6)[key], value, rtol=1e-4, atol=1e-6)


def test_nan_loss_stops_naming_step_and_checkpoint(tmp_path, pairs, monkeypatch):
    class PoisonedL1(torch.nn.Module):
        """L1 that turns NaN from the fourth optimizer step on."""

        calls = 0

        def forward(self, restored, clean):
            PoisonedL1.calls += 1
            value = torch.nn.functional.l1_loss(restored, clean)
            return value * float("nan") if PoisonedL1.calls > 3 else value

    poisoned = lambda *args, **kwargs: PoisonedL1()  # noqa: E731
    monkeypatch.setattr(training_loop, "build_loss", poisoned)
    with pytest.raises(TrainingError, match=r"loss is nan at step 4; .*step_00000002\.pth"):
        train(load_config(tiny_config(tmp_path, pairs)))


def test_early_stopping_after_patience_validations_without_a_new_best(tmp_path, pairs):
    """As the DAIT/DMSR train.py: stop once `patience` validations in a row bring no new best."""
    assert load_config(CONFIGS / "cpraformer.yaml", check_paths=False).train.early_stop_patience == 40
    raw = tiny_config(tmp_path, pairs, iterations=10, val_every=1, checkpoint_every=100, early_stop_patience=2)
    raw["optim"]["lr"] = 0.0  # the validation PSNR never improves after the first
    run_dir = train(load_config(raw))
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_psnr" in r] == [1, 2, 3]
    assert [r["step"] for r in records if "early_stop" in r] == [3]
    assert "best" in records[-1]["early_stop"] and max(r["step"] for r in records) == 3
    assert (run_dir / "checkpoints" / "step_00000003.pth").is_file()  # resumable where it stopped
