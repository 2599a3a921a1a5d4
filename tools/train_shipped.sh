#!/usr/bin/env bash
# Reproduce the shipped weights (srcnn_fast/weights/srcnn_x{2,3,4}.npz) from T91 alone. Seeded,
# resumable (rerun the script after an interruption: each step continues from its checkpoint),
# logged to OUT_DIR/*.npz.ckpt/train.log. About 2.2 hours on a quiet 2-core CPU (estimated).
#
#   bash tools/train_shipped.sh [DATA_DIR] [OUT_DIR]
#
# The recipe, the same at every scale (README, model card): dead ReLU channels revived after
# each epoch, the input luma centred (-0.5, folded into conv1's bias when the weights are
# written), the identity start (the network begins by outputting its bicubic input), the L1
# loss; Adam, 1,300 batches of 16 48x48 sub-images per epoch. Each scale from scratch: 56 epochs
# at 1e-3 decaying (cosine) to 5e-6, then 24 more from those weights at 2e-4 decaying to 1e-6,
# both on LR images made by Pillow's resize; then 24 more at 2e-4 decaying to 1e-6 on LR images
# made as MATLAB's imresize makes them (the benchmark sets' LR files were made so); then a warm
# restart on those, 40 epochs at 5e-4 decaying to 1e-6, seed 1 (new sub-images, same hold-out).
# Validation (T91 hold-out, MATLAB-made LR) over the last two steps: x2 34.438 -> 34.447 ->
# 34.461, x3 31.342 -> 31.347 -> 31.356, x4 29.321 -> 29.325 -> 29.345 dB.
set -euo pipefail
data=${1:-../shared/data/T91}
out=${2:-runs/shipped}
mkdir -p "$out"
common=(--data "$data" --patch 48 --batch-size 16 --steps 1300 --seed 0
    --revive-dead --input-offset 0.5 --loss l1)
# Runs go two at a time, each pinned to one core where taskset exists (two pinned runs train
# more patches per second than one run on both cores).
pinned() { # CORE ARGS...: one training run on one core
    local core=$1
    shift
    if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        taskset -c "$core" srcnn-fast train "${common[@]}" "$@"
    else
        srcnn-fast train "${common[@]}" "$@"
    fi
}
both() { # ARGS_A -- ARGS_B: two runs side by side; fails if either fails
    local a=() b=()
    while [ "$1" != -- ]; do a+=("$1"); shift; done
    shift
    b=("$@")
    pinned 0 "${a[@]}" & local pa=$!
    pinned 1 "${b[@]}" & local pb=$!
    wait "$pa" && wait "$pb"
}
# Each step writes its own file (a rerun writes it again, unchanged, from its finished
# checkpoint, so the next step always starts from the same weights): out/from_scratch_xS.npz,
# out/continued_xS.npz, out/matched_xS.npz, then out/srcnn_xS.npz.
first=(--downscaler pillow --identity-init --epochs 56 --final-lr 5e-6)
more=(--downscaler pillow --epochs 24 --lr 2e-4 --final-lr 1e-6)
matched=(--downscaler matlab --epochs 24 --lr 2e-4 --final-lr 1e-6)
restart=(--downscaler matlab --epochs 40 --lr 5e-4 --final-lr 1e-6 --seed 1)
both --scale 3 "${first[@]}" --out "$out/from_scratch_x3.npz" -- \
    --scale 2 "${first[@]}" --out "$out/from_scratch_x2.npz"
both --scale 4 "${first[@]}" --out "$out/from_scratch_x4.npz" -- \
    --scale 3 "${more[@]}" --init "$out/from_scratch_x3.npz" --out "$out/continued_x3.npz"
both --scale 2 "${more[@]}" --init "$out/from_scratch_x2.npz" --out "$out/continued_x2.npz" -- \
    --scale 4 "${more[@]}" --init "$out/from_scratch_x4.npz" --out "$out/continued_x4.npz"
both --scale 3 "${matched[@]}" --init "$out/continued_x3.npz" --out "$out/matched_x3.npz" -- \
    --scale 2 "${matched[@]}" --init "$out/continued_x2.npz" --out "$out/matched_x2.npz"
both --scale 4 "${matched[@]}" --init "$out/continued_x4.npz" --out "$out/matched_x4.npz" -- \
    --scale 3 "${restart[@]}" --init "$out/matched_x3.npz" --out "$out/srcnn_x3.npz"
both --scale 2 "${restart[@]}" --init "$out/matched_x2.npz" --out "$out/srcnn_x2.npz" -- \
    --scale 4 "${restart[@]}" --init "$out/matched_x4.npz" --out "$out/srcnn_x4.npz"
echo "done: copy $out/srcnn_x{2,3,4}.npz to srcnn_fast/weights/ and run tools/quality_table.py"
