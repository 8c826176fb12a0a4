#!/usr/bin/env bash
# Train the shipped video upsampler (docs/upsampler.md) on the plain shapes world at 128 x 128, the world the
# shipped generator makes -- the image upsampler, then its temporal layers -- measure it, and copy its upsampler/
# into the shipped model folder (fp16). The textured configs (tiny-shapes/upsampler-image, tiny-shapes/upsampler on
# `--texture any` data) are the flicker measurement of PAPER.md section 6, not shipped.
# Usage: scripts/train_upsampler.sh [EXTRA ARGS FOR EVERY `videoldm train`, e.g. --resume]
# Run from the repository root. docs/upsampler.md records the steps and wall time of each stage.
set -euo pipefail
PY=${PYTHON:-python}
VIDEOS=${VIDEOS:-384}
if [ ! -f data/shapes-plain-128/captions.csv ]; then
  # --lossless: the truth's colour edges at full resolution (yuv420p halves them)
  /usr/bin/time -f "data: %e s" $PY -m videoldm data shapes --out data/shapes-plain-128 --videos "$VIDEOS" \
    --seed 0 --size 128 --frames 16 --speed 0.25 1.25 --lossless
fi
for stage in upsampler-plain-image upsampler-plain; do
  /usr/bin/time -f "$stage: %e s" $PY -m videoldm train "tiny-shapes/$stage" "$@"
done
$PY -m benchmarks.upsampler_quality --model runs/tiny-shapes/upsampler-plain/model --texture plain
$PY scripts/ship_model.py runs/tiny-shapes/upsampler-plain/model/upsampler src/videoldm/assets/tiny-shapes/upsampler
