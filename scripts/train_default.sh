#!/usr/bin/env bash
# Train derain's default model: the exact commands behind src/derain/pretrained/derain-mixed.*
# (stages 1-3), derain-storm.* (stages 4-5), derain-downpour.* (stages 6-7) and derain-near.*
# (stage 8). Each stage first builds the corpus folders it trains and validates on where they are
# missing (the photo corpus, then rain pairs of fixed seeds: `pairs` below names each folder's
# recipe), then trains: stage 1 (configs/derain-mixed.yaml, in RUN_DIR), stage 2
# (configs/derain-mixed-finish.yaml, in RUN_DIR-finish), stage 3 (configs/derain-mixed-presets.yaml,
# in RUN_DIR-presets), stage 4 (configs/derain-storm.yaml, in RUN_DIR-storm), stage 5
# (configs/derain-storm-balance.yaml, in RUN_DIR-storm-balance), stage 6 (configs/derain-downpour.yaml,
# in RUN_DIR-downpour), stage 7 (configs/derain-downpour-balance.yaml, in RUN_DIR-downpour-balance)
# and stage 8 (configs/derain-near.yaml, in RUN_DIR-near), each from the one before; run it again
# to resume any. Where the earlier run folders are lost, set STAGE5_END to
# src/derain/pretrained/derain-storm.safetensors (stage 5's final EMA weights) or STAGE7_END to
# src/derain/pretrained/derain-downpour.safetensors (stage 7's) to go on from there.
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
NEAR_DIR=$RUN_DIR-near
ROOT=$(cd "$(dirname "$0")/.." && pwd)

pairs() {  # pairs FOLDER: build the corpus folder FOLDER lies in unless it exists (fixed seeds)
    local folder=$1 out scale
    case $folder in  # derain-synth and its val pairs are built whole
        derain-synth/*) folder=derain-synth ;;
        derain-synth-val/*) folder=derain-synth-val ;;
    esac
    out=$CORPUS/$folder
    [ -d "$out" ] && return
    scale=${folder##*/s}
    case $folder in
        photos) derain data photos --out "$out" ;;
        derain-synth) derain data synth-benchmark --photos "$CORPUS/photos" --out "$out" ;;
        derain-synth-val) python "$ROOT/scripts/make_derain_synth_val.py" "$CORPUS" ;;
        mixed-train/s*) synth "$out" mixed 6 "$scale" "$scale" --vary-scenes ;;
        presets-train/light) synth "$out" light 2 481 480 --vary-scenes ;;
        presets-train/medium) synth "$out" medium 2 482 480 --vary-scenes ;;
        presets-train/heavy) synth "$out" heavy 2 483 480 --vary-scenes ;;
        storm-train/s*) synth "$out" storm $((scale == 480 ? 3 : 2)) $((scale * 10)) "$scale" --vary-scenes ;;
        ddn-train/s480) synth "$out" ddn 2 4801 480 --vary-scenes ;;
        downpour-train/s*) synth "$out" downpour $((scale == 480 ? 3 : 2)) $((scale * 10 + 2)) "$scale" --vary-scenes ;;
        lines-train/s*) synth "$out" mixed $((scale == 480 ? 3 : 2)) $((scale * 10 + 3)) "$scale" --vary-scenes --scene-lines ;;
        jorder-train/s*) synth "$out" jorder $((scale == 480 ? 3 : 2)) $((scale * 10 + 4)) "$scale" --vary-scenes ;;
        near-train/s*) synth "$out" near $((scale == 480 ? 3 : 2)) $((scale * 10 + 5)) "$scale" --vary-scenes ;;
        near-val) synth "$out" near 2 5 480 val ;;
        jorder-val) synth "$out" jorder 2 7 480 val ;;
        downpour-val) synth "$out" downpour 2 6 480 val ;;
        ddn-val) synth "$out" ddn 2 9 480 val ;;
        storm-val) synth "$out" storm 2 8 480 val ;;
        mixed-val) synth "$out" mixed 3 7 480 val ;;
        *) echo "train_default.sh: no recipe for corpus folder $folder" >&2; exit 2 ;;
    esac
}

synth() {  # synth OUT PRESET PER_IMAGE SEED SHORT_SIDE [val | synth options]: pairs from the train (or val) photos
    local out=$1 preset=$2 per_image=$3 seed=$4 side=$5 split=train
    shift 5
    if [ "${1:-}" = val ]; then split=val; shift; fi
    derain data synth --clean "$CORPUS/photos/$split" --out "$out" --preset "$preset" --per-image "$per_image" \
        --seed "$seed" --short-side "$side" "$@"
}
pairs photos

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
# stage 8: rain close to the lens (wide, soft, faint streaks at a slant over finer rain, through a
# camera) beside stage 7's rain
STAGE8=(near-train/s480 near-train/s640 jorder-train/s480 downpour-train/s480 storm-train/s480 ddn-train/s480
    derain-synth/train/{light,medium,heavy} presets-train/{light,medium,heavy})
VAL8=(near-val "${VAL6[@]}")
STAGE1_END=$RUN_DIR/checkpoints/step_00000900.ema.pth

stage() {  # stage RUN_DIR CONFIG INIT END TRAIN VAL [CLEAN]: train (or resume) a stage unless END exists;
    # CLEAN, a folder of clean photos, is added as pairs of each photo with itself
    local run_dir=$1 config=$2 init=$3 end=$4 train=$5 val=$6 clean=${7:-} folder
    if [ -n "$end" ] && [ -f "$end" ]; then
        return
    fi
    for folder in $train $val; do pairs "$folder"; done
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
STAGE6_END=$DOWNPOUR_DIR/checkpoints/step_00000600.ema.pth
STAGE7_END=${STAGE7_END:-$DOWNPOUR_BALANCE_DIR/checkpoints/step_00000200.ema.pth}
if [ ! -f "$STAGE5_END" ] && [ ! -f "$STAGE7_END" ]; then
    stage "$RUN_DIR" derain-mixed.yaml "$ROOT/src/derain/pretrained/derain-synth.safetensors" "$STAGE1_END" "${STAGE1[*]}" mixed-val
    stage "$FINISH_DIR" derain-mixed-finish.yaml "$STAGE1_END" "$STAGE2_END" "${STAGE2[*]}" mixed-val
    stage "$PRESETS_DIR" derain-mixed-presets.yaml "$STAGE2_END" "$STAGE3_END" "${STAGE3[*]}" "${VAL3[*]}"
    stage "$STORM_DIR" derain-storm.yaml "$STAGE3_END" "$STAGE4_END" "${STAGE4[*]}" "${VAL4[*]}" "$CLEAN"
    stage "$BALANCE_DIR" derain-storm-balance.yaml "$STAGE4_END" "$STAGE5_END" "${STAGE5[*]}" "${VAL5[*]}" "$CLEAN"
fi
if [ ! -f "$STAGE7_END" ]; then
    stage "$DOWNPOUR_DIR" derain-downpour.yaml "$STAGE5_END" "$STAGE6_END" "${STAGE6[*]}" "${VAL6[*]}" "$CLEAN"
    stage "$DOWNPOUR_BALANCE_DIR" derain-downpour-balance.yaml "$STAGE6_END" "$STAGE7_END" "${STAGE7[*]}" "${VAL6[*]}" "$CLEAN"
fi
stage "$NEAR_DIR" derain-near.yaml "$STAGE7_END" "" "${STAGE8[*]}" "${VAL8[*]}" "$CLEAN"
