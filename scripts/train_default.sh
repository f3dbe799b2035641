#!/usr/bin/env bash
# Train derain's default model ("derain-mixed"): the exact commands behind
# src/derain/pretrained/derain-mixed.*. Builds what is missing first (the photo corpus, mixed-rain
# training pairs at three scales with scene variations, preset pairs, validation pairs from the
# corpus's val photos), then trains stage 1 (configs/derain-mixed.yaml, in RUN_DIR), stage 2
# (configs/derain-mixed-finish.yaml, in RUN_DIR-finish) and stage 3 (configs/derain-mixed-presets.yaml,
# in RUN_DIR-presets), each from the one before; run it again to resume any.
#
#   OMP_NUM_THREADS=2 scripts/train_default.sh                   # ./corpus, ./runs/derain-mixed
#   CORPUS=~/data RUN_DIR=~/runs/derain-mixed scripts/train_default.sh
set -euo pipefail

CORPUS=${CORPUS:-corpus}
RUN_DIR=${RUN_DIR:-runs/derain-mixed}
FINISH_DIR=$RUN_DIR-finish
PRESETS_DIR=$RUN_DIR-presets
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
if [ ! -d "$CORPUS/derain-synth-val" ]; then
    python "$ROOT/scripts/make_derain_synth_val.py" "$CORPUS"
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
STAGE3=(mixed-train/s480 derain-synth/train/{light,medium,heavy} presets-train/{light,medium,heavy})
VAL3=(mixed-val derain-synth-val/{light,medium,heavy})
STAGE1_END=$RUN_DIR/checkpoints/step_00000900.ema.pth

stage() {  # stage RUN_DIR CONFIG INIT END TRAIN VAL: train (or resume) a stage unless END exists
    local run_dir=$1 config=$2 init=$3 end=$4 train=$5 val=$6
    if [ -n "$end" ] && [ -f "$end" ]; then
        return
    fi
    if ls "$run_dir"/checkpoints/step_*.state.pt >/dev/null 2>&1; then
        derain train --resume "$run_dir"
    else
        derain train "$ROOT/configs/$config" --set "train.run_dir=$run_dir" --set "model.init=$init" \
            --set "data.train_input=$(list input $train)" --set "data.train_target=$(list target $train)" \
            --set "data.val_input=$(list input $val)" --set "data.val_target=$(list target $val)"
    fi
}
STAGE2_END=$FINISH_DIR/checkpoints/step_00001000.ema.pth
stage "$RUN_DIR" derain-mixed.yaml "$ROOT/src/derain/pretrained/derain-synth.safetensors" "$STAGE1_END" "${STAGE1[*]}" mixed-val
stage "$FINISH_DIR" derain-mixed-finish.yaml "$STAGE1_END" "$STAGE2_END" "${STAGE2[*]}" mixed-val
stage "$PRESETS_DIR" derain-mixed-presets.yaml "$STAGE2_END" "" "${STAGE3[*]}" "${VAL3[*]}"
