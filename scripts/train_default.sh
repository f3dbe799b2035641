#!/usr/bin/env bash
# Train derain's default model: the exact commands behind src/derain/pretrained/derain-mixed.*
# (stages 1-3), derain-storm.* (stages 4-5) and derain-downpour.* (stages 6-7). Builds what is
# missing first (the photo corpus, mixed-rain training pairs at three scales with scene
# variations, preset, storm, downpour, scene-line, JORDER-style and DDN-style pairs, validation
# pairs from the corpus's val photos), then trains stage 1 (configs/derain-mixed.yaml, in RUN_DIR),
# stage 2 (configs/derain-mixed-finish.yaml, in RUN_DIR-finish), stage 3
# (configs/derain-mixed-presets.yaml, in RUN_DIR-presets), stage 4 (configs/derain-storm.yaml, in
# RUN_DIR-storm), stage 5 (configs/derain-storm-balance.yaml, in RUN_DIR-storm-balance), stage 6
# (configs/derain-downpour.yaml, in RUN_DIR-downpour) and stage 7
# (configs/derain-downpour-balance.yaml, in RUN_DIR-downpour-balance), each from the one before;
# run it again to resume any. Where the earlier run folders are lost, set STAGE5_END to
# src/derain/pretrained/derain-storm.safetensors (stage 5's final EMA weights) to go on from there.
#
#   OMP_NUM_THREADS=2 scripts/train_default.sh                   # ./corpus, ./runs/derain-mixed
#   CORPUS=~/data RUN_DIR=~/runs/derain-mixed scripts/train_default.sh
set -euo pipefail

CORPUS=${CORPUS:-corpus}
RUN_DIR=${RUN_DIR:-runs/derain-mixed}
FINISH_DIR=$RUN_DIR-finish
PRESETS_DIR=$RUN_DIR-presets
STORM_DIR=$RUN_DIR-storm
BALANCE_DIR=$RUN_DIR-storm-balance
DOWNPOUR_DIR=$RUN_DIR-downpour
DOWNPOUR_BALANCE_DIR=$RUN_DIR-downpour-balance
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
for scale in 480 640; do
    if [ ! -d "$CORPUS/storm-train/s$scale" ]; then
        derain data synth --clean "$CORPUS/photos/train" --out "$CORPUS/storm-train/s$scale" --preset storm \
            --per-image $((scale == 480 ? 3 : 2)) --seed $((scale * 10)) --short-side "$scale" --vary-scenes
    fi
done
if [ ! -d "$CORPUS/ddn-train/s480" ]; then
    derain data synth --clean "$CORPUS/photos/train" --out "$CORPUS/ddn-train/s480" --preset ddn --per-image 2 \
        --seed 4801 --short-side 480 --vary-scenes
fi
for scale in 480 640; do
    if [ ! -d "$CORPUS/downpour-train/s$scale" ]; then
        derain data synth --clean "$CORPUS/photos/train" --out "$CORPUS/downpour-train/s$scale" --preset downpour \
            --per-image $((scale == 480 ? 3 : 2)) --seed $((scale * 10 + 2)) --short-side "$scale" --vary-scenes
    fi
    if [ ! -d "$CORPUS/lines-train/s$scale" ]; then
        derain data synth --clean "$CORPUS/photos/train" --out "$CORPUS/lines-train/s$scale" --preset mixed \
            --per-image $((scale == 480 ? 3 : 2)) --seed $((scale * 10 + 3)) --short-side "$scale" --vary-scenes --scene-lines
    fi
    if [ ! -d "$CORPUS/jorder-train/s$scale" ]; then
        derain data synth --clean "$CORPUS/photos/train" --out "$CORPUS/jorder-train/s$scale" --preset jorder \
            --per-image $((scale == 480 ? 3 : 2)) --seed $((scale * 10 + 4)) --short-side "$scale" --vary-scenes
    fi
done
if [ ! -d "$CORPUS/jorder-val" ]; then
    derain data synth --clean "$CORPUS/photos/val" --out "$CORPUS/jorder-val" --preset jorder --per-image 2 \
        --seed 7 --short-side 480
fi
if [ ! -d "$CORPUS/downpour-val" ]; then
    derain data synth --clean "$CORPUS/photos/val" --out "$CORPUS/downpour-val" --preset downpour --per-image 2 \
        --seed 6 --short-side 480
fi
if [ ! -d "$CORPUS/ddn-val" ]; then
    derain data synth --clean "$CORPUS/photos/val" --out "$CORPUS/ddn-val" --preset ddn --per-image 2 --seed 9 --short-side 480
fi
if [ ! -d "$CORPUS/storm-val" ]; then
    derain data synth --clean "$CORPUS/photos/val" --out "$CORPUS/storm-val" --preset storm --per-image 2 \
        --seed 8 --short-side 480
fi
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
# stage 4 adds storm pairs and clean photos paired with themselves (input = target)
STAGE4=(storm-train/s480 storm-train/s640 mixed-train/s480 derain-synth/train/{light,medium,heavy} presets-train/{light,medium,heavy})
VAL4=(storm-val "${VAL3[@]}")
# stage 5: every kind of pair the earlier stages saw, and DDN-style pairs
STAGE5=(mixed-train/s360 mixed-train/s480 mixed-train/s640 ddn-train/s480 storm-train/s480 storm-train/s640
    derain-synth/train/{light,medium,heavy} presets-train/{light,medium,heavy})
VAL5=(ddn-val "${VAL4[@]}")
# stage 6: downpours with far fine rain, mixed rain over photos with drawn lines, JORDER-style crossing
# layers, and what keeps the rest
STAGE6=(jorder-train/s480 jorder-train/s640 downpour-train/s480 lines-train/s480 storm-train/s480 ddn-train/s480
    derain-synth/train/{light,medium,heavy})
VAL6=(jorder-val downpour-val ddn-val storm-val mixed-val derain-synth-val/{light,medium,heavy})
# stage 7: the presets at twice stage 6's share beside the rain stage 6 added
STAGE7=(jorder-train/s480 downpour-train/s480 storm-train/s480 ddn-train/s480
    derain-synth/train/{light,medium,heavy} presets-train/{light,medium,heavy})
STAGE1_END=$RUN_DIR/checkpoints/step_00000900.ema.pth

stage() {  # stage RUN_DIR CONFIG INIT END TRAIN VAL [CLEAN]: train (or resume) a stage unless END exists;
    # CLEAN, a folder of clean photos, is added as pairs of each photo with itself
    local run_dir=$1 config=$2 init=$3 end=$4 train=$5 val=$6 clean=${7:-}
    if [ -n "$end" ] && [ -f "$end" ]; then
        return
    fi
    if ls "$run_dir"/checkpoints/step_*.state.pt >/dev/null 2>&1; then
        derain train --resume "$run_dir"
    else
        local inputs targets
        inputs=$(list input $train)
        targets=$(list target $train)
        if [ -n "$clean" ]; then
            inputs="${inputs%]},$clean]"
            targets="${targets%]},$clean]"
        fi
        derain train "$ROOT/configs/$config" --set "train.run_dir=$run_dir" --set "model.init=$init" \
            --set "data.train_input=$inputs" --set "data.train_target=$targets" \
            --set "data.val_input=$(list input $val)" --set "data.val_target=$(list target $val)"
    fi
}
STAGE2_END=$FINISH_DIR/checkpoints/step_00001000.ema.pth
STAGE3_END=$PRESETS_DIR/checkpoints/step_00000300.ema.pth
CLEAN=$CORPUS/derain-synth/train/light/target
STAGE4_END=$STORM_DIR/checkpoints/step_00001000.ema.pth
STAGE5_END=${STAGE5_END:-$BALANCE_DIR/checkpoints/step_00000400.ema.pth}
if [ ! -f "$STAGE5_END" ]; then
    stage "$RUN_DIR" derain-mixed.yaml "$ROOT/src/derain/pretrained/derain-synth.safetensors" "$STAGE1_END" "${STAGE1[*]}" mixed-val
    stage "$FINISH_DIR" derain-mixed-finish.yaml "$STAGE1_END" "$STAGE2_END" "${STAGE2[*]}" mixed-val
    stage "$PRESETS_DIR" derain-mixed-presets.yaml "$STAGE2_END" "$STAGE3_END" "${STAGE3[*]}" "${VAL3[*]}"
    stage "$STORM_DIR" derain-storm.yaml "$STAGE3_END" "$STAGE4_END" "${STAGE4[*]}" "${VAL4[*]}" "$CLEAN"
    stage "$BALANCE_DIR" derain-storm-balance.yaml "$STAGE4_END" "$STAGE5_END" "${STAGE5[*]}" "${VAL5[*]}" "$CLEAN"
fi
STAGE6_END=$DOWNPOUR_DIR/checkpoints/step_00000600.ema.pth
stage "$DOWNPOUR_DIR" derain-downpour.yaml "$STAGE5_END" "$STAGE6_END" "${STAGE6[*]}" "${VAL6[*]}" "$CLEAN"
stage "$DOWNPOUR_BALANCE_DIR" derain-downpour-balance.yaml "$STAGE6_END" "" "${STAGE7[*]}" "${VAL6[*]}" "$CLEAN"
