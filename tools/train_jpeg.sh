#!/usr/bin/env bash
# Train the JPEG-aware weights (srcnn_fast/weights/srcnn_x{2,3,4}_jpeg.npz) from the shipped clean
# ones, on T91 alone. Seeded, resumable (rerun after an interruption: each scale continues from
# its checkpoint), logged to OUT_DIR/srcnn_xS_jpeg.npz.ckpt/train.log.
#
#   bash tools/train_jpeg.sh [DATA_DIR] [OUT_DIR] [SCALE...]     (default scales: 2 3 4)
#
# The shipped recipe's options (docs/training.md), started from the clean weights of the scale
# (--init), on LR images JPEG-compressed by Pillow at a quality drawn uniformly from 30..90 in
# steps of 5 (6 copies of each training image and downscale, each at its own quality; the
# hold-out scored at all 13): below the quality where `auto` switches to the clean weights
# (srcnn_fast.jpeg.auto_threshold: 80-85), so none of their capacity goes to clean inputs. Adam
# 3e-4 decaying (cosine) to 1e-5 over 50 epochs of 1,300 batches of 16 48x48 sub-images:
# 65 minutes on 2 quiet cores for one scale, ~75-80 minutes on busy ones (x2, measured).
set -euo pipefail
data=${1:-../shared/data/T91}
out=${2:-runs/jpeg}
shift $(($# > 2 ? 2 : $#))
scales=("${@:-2 3 4}")
mkdir -p "$out"
for scale in ${scales[*]}; do
    srcnn-fast train --data "$data" -s "$scale" --out "$out/srcnn_x${scale}_jpeg.npz" \
        --init "srcnn_fast/weights/srcnn_x${scale}.npz" --patch 48 --batch-size 16 --steps 1300 \
        --seed 0 --revive-dead --input-offset 0.5 --loss l1 --downscaler matlab \
        --jpeg 30 35 40 45 50 55 60 65 70 75 80 85 90 --jpeg-copies 6 \
        --lr 3e-4 --final-lr 1e-5 --epochs 50
done
echo "done: check with tools/jpeg_threshold.py and tools/quality_table.py --jpeg --weights DIR,"
echo "then copy $out/srcnn_x*_jpeg.npz to srcnn_fast/weights/"
