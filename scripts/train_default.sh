#!/usr/bin/env bash
# Train derain's default model ("derain-mixed") from configs/derain-mixed.yaml: the exact command
# behind src/derain/pretrained/derain-mixed.*. Builds what is missing first (the photo corpus,
# mixed-rain training pairs at three scales with scene variations, validation pairs from the
# corpus's val photos), then trains; run it again with the same RUN_DIR to resume.
#
#   OMP_NUM_THREADS=2 scripts/train_default.sh                   # ./corpus, ./runs/derain-mixed
#   CORPUS=~/data RUN_DIR=~/runs/derain-mixed scripts/train_default.sh
set -euo pipefail

CORPUS=${CORPUS:-corpus}
RUN_DIR=${RUN_DIR:-runs/derain-mixed}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCALES=(360 480 640)

if [ ! -d "$CORPUS/photos" ]; then
    derain data photos --out "$CORPUS/photos"
fi
for scale in "${SCALES[@]}"; do
    if [ ! -d "$CORPUS/mixed-train/s$scale" ]; then
        derain data synth --clean "$CORPUS/photos/train" --out "$CORPUS/mixed-train/s$scale" --preset mixed \
            --per-image 6 --seed "$scale" --short-side "$scale" --vary-scenes
    fi
done
if [ ! -d "$CORPUS/mixed-val" ]; then
    derain data synth --clean "$CORPUS/photos/val" --out "$CORPUS/mixed-val" --preset mixed --per-image 3 \
        --seed 7 --short-side 480
fi

if ls "$RUN_DIR"/checkpoints/step_*.state.pt >/dev/null 2>&1; then
    exec derain train --resume "$RUN_DIR"
fi
list() {  # list _ SIDE -> [a, b, c] for --set
    local items=()
    for scale in "${SCALES[@]}"; do items+=("$CORPUS/mixed-train/s$scale/$2"); done
    local IFS=,
    echo "[${items[*]}]"
}
exec derain train "$ROOT/configs/derain-mixed.yaml" \
    --set "train.run_dir=$RUN_DIR" \
    --set "model.init=$ROOT/src/derain/pretrained/derain-synth.safetensors" \
    --set "data.train_input=$(list mixed-train input)" \
    --set "data.train_target=$(list mixed-train target)" \
    --set "data.val_input=$CORPUS/mixed-val/input" \
    --set "data.val_target=$CORPUS/mixed-val/target"
