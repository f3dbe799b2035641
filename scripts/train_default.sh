#!/usr/bin/env bash
# Train derain's default model ("derain-mixed"): the exact commands behind
# src/derain/pretrained/derain-mixed.*. Builds what is missing first (the photo corpus, mixed-rain
# training pairs at three scales with scene variations, preset pairs, validation pairs from the
# corpus's val photos), then trains stage 1 (configs/derain-mixed.yaml, in RUN_DIR) and stage 2
# (configs/derain-mixed-finish.yaml, in RUN_DIR-finish); run it again to resume either.
#
#   OMP_NUM_THREADS=2 scripts/train_default.sh                   # ./corpus, ./runs/derain-mixed
#   CORPUS=~/data RUN_DIR=~/runs/derain-mixed scripts/train_default.sh
set -euo pipefail

CORPUS=${CORPUS:-corpus}
RUN_DIR=${RUN_DIR:-runs/derain-mixed}
FINISH_DIR=$RUN_DIR-finish
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCALES=(360 480 640)
PRESETS=(light medium heavy)

if [ ! -d "$CORPUS/photos" ]; then
    derain data photos --out "$CORPUS/photos"
fi
if [ ! -d "$CORPUS/derain-synth" ]; then
    derain data synth-benchmark --photos "$CORPUS/photos" --out "$CORPUS/derain-synth"
fi
for scale in "${SCALES[@]}"; do
    if [ ! -d "$CORPUS/mixed-train/s$scale" ]; then
        derain data synth --clean "$CORPUS/photos/train" --out "$CORPUS/mixed-train/s$scale" --preset mixed \
            --per-image 6 --seed "$scale" --short-side "$scale" --vary-scenes
    fi
done
for k in 0 1 2; do
    preset=${PRESETS[$k]}
    if [ ! -d "$CORPUS/presets-train/$preset" ]; then
        derain data synth --clean "$CORPUS/photos/train" --out "$CORPUS/presets-train/$preset" --preset "$preset" \
            --per-image 2 --seed $((481 + k)) --short-side 480 --vary-scenes
    fi
done
if [ ! -d "$CORPUS/mixed-val" ]; then
    derain data synth --clean "$CORPUS/photos/val" --out "$CORPUS/mixed-val" --preset mixed --per-image 3 \
        --seed 7 --short-side 480
fi

list() {  # list SIDE FOLDER... -> [F1/SIDE, F2/SIDE, ...] for --set
    local side=$1 items=()
    shift
    for folder in "$@"; do items+=("$CORPUS/$folder/$side"); done
    local IFS=,
    echo "[${items[*]}]"
}
STAGE1=(mixed-train/s360 mixed-train/s480 mixed-train/s640)
STAGE2=("${STAGE1[@]}" derain-synth/train/{light,medium,heavy} presets-train/{light,medium,heavy})
STAGE1_END=$RUN_DIR/checkpoints/step_00000900.ema.pth

if [ ! -f "$STAGE1_END" ]; then
    if ls "$RUN_DIR"/checkpoints/step_*.state.pt >/dev/null 2>&1; then
        derain train --resume "$RUN_DIR"
    else
        derain train "$ROOT/configs/derain-mixed.yaml" \
            --set "train.run_dir=$RUN_DIR" \
            --set "model.init=$ROOT/src/derain/pretrained/derain-synth.safetensors" \
            --set "data.train_input=$(list input "${STAGE1[@]}")" \
            --set "data.train_target=$(list target "${STAGE1[@]}")" \
            --set "data.val_input=$CORPUS/mixed-val/input" \
            --set "data.val_target=$CORPUS/mixed-val/target"
    fi
fi

if ls "$FINISH_DIR"/checkpoints/step_*.state.pt >/dev/null 2>&1; then
    exec derain train --resume "$FINISH_DIR"
fi
exec derain train "$ROOT/configs/derain-mixed-finish.yaml" \
    --set "train.run_dir=$FINISH_DIR" \
    --set "model.init=$STAGE1_END" \
    --set "data.train_input=$(list input "${STAGE2[@]}")" \
    --set "data.train_target=$(list target "${STAGE2[@]}")" \
    --set "data.val_input=$CORPUS/mixed-val/input" \
    --set "data.val_target=$CORPUS/mixed-val/target"
