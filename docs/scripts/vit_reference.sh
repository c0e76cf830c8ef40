#!/bin/sh
# The results of docs/vit.md, offline, on a CPU (measured on the project's 2-core x86_64 VM,
# no GPU, one torch thread, shared with other jobs):
#   sh docs/scripts/vit_reference.sh out/vit-ref
# 1. a ViT-Tiny (6 blocks, 8-px patches at 64 px, random init) trained on 1,200 built-in images
#    (generator seed 1), about 11 minutes there; 2. evaluated on 200 other built-in images
#    (seed 0) with the four transformer methods, Grad-CAM at the last block and Random-CAM as the
#    floor (9 minutes), then Grad-CAM at two earlier blocks, insertion from a mean-colour start
#    and pointing within 4 px (8 minutes together); 3. the leaderboards, the figure and the cost
#    table (docs/images/vit_methods.jpg is the figure written here).
set -e
OUT=${1:-out/vit-ref}
N=${N:-200}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
METHODS=gradcam,legrad,attention-rollout,transformer-attribution,vit-reciprocam,randomcam
$PY -m camscope train --data builtin:1200 --arch vit_tiny_patch16_224 -A depth=6 \
  --image-size 64 --epochs 20 --warmup-epochs 2 --label-smoothing 0.1 --out "$OUT/run"
# every method at the default layer, blocks.5.norm1 (the last block's first LayerNorm):
# Grad-CAM reads that layer's tokens; the attention methods read the blocks up to it (all six)
$PY -m camscope evaluate --model "$OUT/run" --data "builtin:$N" --methods "$METHODS" \
  --metrics loc,pointing,energy,discrimination,deletion,insertion,sanity --sanity-images 8 \
  --steps 10 \
  --out "$OUT/evaluate" --no-progress
# Grad-CAM at two earlier blocks (the same kind of layer: each block's first LayerNorm)
$PY -m camscope evaluate --model "$OUT/run" --data "builtin:$N" --methods gradcam \
  --layers blocks.2.norm1,blocks.4.norm1 --metrics loc,pointing,energy,discrimination,deletion,insertion \
  --steps 10 --out "$OUT/evaluate-layers" --no-progress
# insertion from the normalisation's mean colour instead of RISE's blur (see docs/vit.md)
$PY -m camscope evaluate --model "$OUT/run" --data "builtin:$N" --methods "$METHODS" \
  --metrics insertion --insertion-substrate zero --steps 10 --out "$OUT/evaluate-insertion-mean" \
  --no-progress
# pointing with the 15-px tolerance scaled to 64 px (15 x 64 / 224 = 4.3)
$PY -m camscope evaluate --model "$OUT/run" --data "builtin:$N" --methods "$METHODS" \
  --metrics pointing --tolerance 4 --out "$OUT/evaluate-pointing-4px" --no-progress
$PY docs/scripts/vit_table.py "$OUT/evaluate" "$OUT/evaluate-layers"
$PY docs/scripts/vit_table.py "$OUT/evaluate-insertion-mean"
$PY docs/scripts/vit_table.py "$OUT/evaluate-pointing-4px"
$PY docs/scripts/vit_figure.py "$OUT/run" "$OUT/vit_methods.jpg" --images "$N"
