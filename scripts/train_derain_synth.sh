#!/usr/bin/env bash
# Train derain's first default model ("derain-synth") from configs/derain-synth.yaml: the exact
# command behind src/derain/pretrained/derain-synth.*. Builds what is missing first (the photo
# corpus, derain-synth, and validation pairs from the corpus's val photos), then trains; run it
# again with the same RUN_DIR to resume from the newest checkpoint.
#
#   OMP_NUM_THREADS=2 scripts/train_derain_synth.sh               # ./corpus, ./runs/derain-synth
#   CORPUS=~/data RUN_DIR=~/runs/derain-synth scripts/train_derain_synth.sh
set -euo pipefail

CORPUS=${CORPUS:-corpus}
RUN_DIR=${RUN_DIR:-runs/derain-synth}
CONFIG=$(dirname "$0")/../configs/derain-synth.yaml
PRESETS=(light medium heavy)

if [ ! -d "$CORPUS/photos" ]; then
    derain data photos --out "$CORPUS/photos"
fi
if [ ! -d "$CORPUS/derain-synth" ]; then
    derain data synth-benchmark --photos "$CORPUS/photos" --out "$CORPUS/derain-synth"
fi
if [ ! -d "$CORPUS/derain-synth-val" ]; then
    python "$(dirname "$0")/make_derain_synth_val.py" "$CORPUS"
fi

if ls "$RUN_DIR"/checkpoints/step_*.state.pt >/dev/null 2>&1; then
    exec derain train --resume "$RUN_DIR"
fi
folders() {  # folders SPLIT SIDE -> [a, b, c] for --set
    local split=$1 side=$2 list=()
    for preset in "${PRESETS[@]}"; do list+=("$CORPUS/$split/$preset/$side"); done
    local IFS=,
    echo "[${list[*]}]"
}
exec derain train "$CONFIG" \
    --set "train.run_dir=$RUN_DIR" \
    --set "data.train_input=$(folders derain-synth/train input)" \
    --set "data.train_target=$(folders derain-synth/train target)" \
    --set "data.val_input=$(folders derain-synth-val input)" \
    --set "data.val_target=$(folders derain-synth-val target)"
