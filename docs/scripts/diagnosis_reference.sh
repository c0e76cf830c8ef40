#!/bin/sh
# The reference results of docs/diagnosis.md, offline (CPU works; a GPU is faster):
#   sh docs/scripts/diagnosis_reference.sh out/diagnosis-ref        # N=16 built-in images
#   N=200 sh docs/scripts/diagnosis_reference.sh out/diagnosis-200   # a larger re-run
# Then: python docs/scripts/diagnosis_tables.py out/diagnosis-ref prints the tables.
set -e
OUT=${1:-out/diagnosis-ref}
N=${N:-16}
PY=${PYTHON:-python}
METHODS=${METHODS:-gradcam,gradcam++,hirescam,xgradcam,layercam,eigengradcam,eigencam,cam}
for attack in fgsm pgd; do
  for eps in 1 2; do
    $PY -m camscope adversarial "builtin:$N" --attack $attack --eps "$eps/255" --steps 10 \
      --method "$METHODS" --out "$OUT/$attack-$eps" --no-progress
  done
done
$PY -m camscope evaluate --data "builtin:$N" --methods "$METHODS" --metrics robustness \
  --out "$OUT/robustness"
$PY -c "from skimage import data; from PIL import Image; Image.fromarray(data.chelsea()).save('$OUT/chelsea.png')"
# docs/images/adversarial_chelsea.png is chelsea.adversarial.png, resized to 1400 px
$PY -m camscope adversarial "$OUT/chelsea.png" --attack pgd --eps 2/255 --steps 40 \
  --target airliner --method gradcam --out "$OUT/chelsea" --no-progress
$PY docs/scripts/make_labelled_folder.py "$OUT/labelled" --per-class 6
$PY -m camscope failures --data "$OUT/labelled" --out "$OUT/failures" --no-progress || true
