#!/usr/bin/env bash
# Reproduce the shipped weights (srcnn_fast/weights/srcnn_x{2,3,4}.npz) from T91 alone. Seeded,
# resumable (rerun the script after an interruption: each step continues from its checkpoint),
# logged to OUT_DIR/*.npz.ckpt/train.log. About 5.5 hours on a quiet 2-core CPU.
#
#   bash tools/train_shipped.sh [DATA_DIR] [OUT_DIR]
set -euo pipefail
data=${1:-../shared/data/T91}
out=${2:-runs/shipped}
mkdir -p "$out"
# A step's starting weights are copied once, so a rerun never restarts a step from later weights.
snapshot() { [ -e "$2" ] || cp "$1" "$2"; }
train() { srcnn-fast train --data "$data" --patch 48 --batch-size 16 --steps 1500 --seed 0 "$@"; }
# x3 from scratch; its 40-epoch weights seed x4.
train --scale 3 --epochs 40 --out "$out/srcnn_x3.npz"
snapshot "$out/srcnn_x3.npz" "$out/srcnn_x3_40.npz"
train --scale 4 --epochs 16 --lr 5e-4 --init "$out/srcnn_x3_40.npz" --out "$out/srcnn_x4.npz"
# x2 from scratch (fine-tuning from x3 validated worse).
train --scale 2 --epochs 36 --out "$out/srcnn_x2.npz"
# x3 continued to 56 epochs (the cosine schedule is recomputed for the new length).
train --scale 3 --epochs 56 --out "$out/srcnn_x3.npz"
# ... then 80 more epochs from those weights at a lower rate (3e-4 -> 1e-6): validation
# 30.98 -> 31.07 dB.
snapshot "$out/srcnn_x3.npz" "$out/srcnn_x3_56.npz"
train --scale 3 --epochs 80 --lr 3e-4 --final-lr 1e-6 --init "$out/srcnn_x3_56.npz" \
    --out "$out/srcnn_x3.npz" --checkpoint-dir "$out/srcnn_x3_cont.npz.ckpt"
# Continuations, two at a time, each pinned to one core where taskset exists (two pinned runs
# train 1.26x more patches per second than one run on both cores).
pinned() { # CORE ARGS...: one training run on one core
    local core=$1
    shift
    if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        taskset -c "$core" srcnn-fast train "${common[@]}" "$@"
    else
        srcnn-fast train "${common[@]}" "$@"
    fi
}
common=(--data "$data" --patch 48 --batch-size 16 --steps 1500 --seed 0 --final-lr 1e-6)
both() { # ARGS_A -- ARGS_B: two runs side by side; fails if either fails
    local a=() b=()
    while [ "$1" != -- ]; do a+=("$1"); shift; done
    shift
    b=("$@")
    pinned 0 "${a[@]}" & local pa=$!
    pinned 1 "${b[@]}" & local pb=$!
    wait "$pa" && wait "$pb"
}
# x4 (16 epochs) and x2 (36) continued 80 epochs each: validation 29.09 -> 29.15, 34.03 -> 34.13.
snapshot "$out/srcnn_x4.npz" "$out/srcnn_x4_16.npz"
snapshot "$out/srcnn_x2.npz" "$out/srcnn_x2_36.npz"
both --scale 4 --epochs 80 --lr 4e-4 --init "$out/srcnn_x4_16.npz" --out "$out/srcnn_x4.npz" \
    --checkpoint-dir "$out/srcnn_x4_cont.npz.ckpt" -- \
    --scale 2 --epochs 80 --lr 3e-4 --init "$out/srcnn_x2_36.npz" --out "$out/srcnn_x2.npz" \
    --checkpoint-dir "$out/srcnn_x2_cont.npz.ckpt"
# Dead channels revived (--revive-dead: 39 of 64 conv1 filters were dead in each file), then 40
# more epochs at 3e-4 -> 1e-6 (x4: 32): x3 and x2 side by side, then x4 on both cores.
# Validation: x2 34.13 -> 34.26, x3 31.07 -> 31.18, x4 29.15 -> 29.23 dB.
snapshot "$out/srcnn_x3.npz" "$out/srcnn_x3_136.npz"
snapshot "$out/srcnn_x2.npz" "$out/srcnn_x2_116.npz"
snapshot "$out/srcnn_x4.npz" "$out/srcnn_x4_96.npz"
both --scale 3 --epochs 40 --lr 3e-4 --revive-dead --init "$out/srcnn_x3_136.npz" \
    --out "$out/srcnn_x3.npz" --checkpoint-dir "$out/srcnn_x3_revived.npz.ckpt" -- \
    --scale 2 --epochs 40 --lr 3e-4 --revive-dead --init "$out/srcnn_x2_116.npz" \
    --out "$out/srcnn_x2.npz" --checkpoint-dir "$out/srcnn_x2_revived.npz.ckpt"
srcnn-fast train "${common[@]}" --scale 4 --epochs 32 --lr 3e-4 --revive-dead \
    --init "$out/srcnn_x4_96.npz" --out "$out/srcnn_x4.npz" \
    --checkpoint-dir "$out/srcnn_x4_revived.npz.ckpt"
echo "done: copy $out/srcnn_x{2,3,4}.npz to srcnn_fast/weights/ and run tools/quality_table.py"
