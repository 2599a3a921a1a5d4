#!/usr/bin/env bash
# Reproduce the shipped weights (srcnn_fast/weights/srcnn_x{2,3,4}.npz) from T91 alone:
# x3 from scratch, then x2 and x4 fine-tuned from the x3 weights. Seeded, resumable (rerun the
# script after an interruption: each step continues from its checkpoint), logged to
# runs/shipped/*.npz.ckpt/train.log. About 75 minutes on a 2-core CPU.
#
#   bash tools/train_shipped.sh [DATA_DIR] [OUT_DIR]
set -euo pipefail
data=${1:-../shared/data/T91}
out=${2:-runs/shipped}
mkdir -p "$out"
train() { srcnn-fast train --data "$data" --patch 48 --batch-size 16 --steps 1500 --seed 0 "$@"; }
train --scale 3 --epochs 40 --out "$out/srcnn_x3.npz"
train --scale 2 --epochs 16 --lr 5e-4 --init "$out/srcnn_x3.npz" --out "$out/srcnn_x2.npz"
train --scale 4 --epochs 16 --lr 5e-4 --init "$out/srcnn_x3.npz" --out "$out/srcnn_x4.npz"
echo "done: copy $out/srcnn_x{2,3,4}.npz to srcnn_fast/weights/ and run tools/quality_table.py"
