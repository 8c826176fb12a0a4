#!/usr/bin/env bash
# Train the video upsampler (docs/upsampler.md) on the textured shapes world at 128 x 128 -- the image upsampler,
# then its temporal layers -- and copy its upsampler/ into the shipped model folder (fp16).
# Usage: scripts/train_upsampler.sh [EXTRA ARGS FOR EVERY `videoldm train`, e.g. --resume]
# Run from the repository root. docs/upsampler.md records the steps and wall time of each stage.
set -euo pipefail
PY=${PYTHON:-python}
VIDEOS=${VIDEOS:-384}
if [ ! -f data/shapes-any-128/captions.csv ]; then
  /usr/bin/time -f "data: %e s" $PY -m videoldm data shapes --out data/shapes-any-128 --videos "$VIDEOS" \
    --seed 0 --size 128 --frames 16 --texture any --lossless
fi
for stage in upsampler-image upsampler; do
  /usr/bin/time -f "$stage: %e s" $PY -m videoldm train "tiny-shapes/$stage" "$@"
done
$PY -m benchmarks.upsampler_quality --model runs/tiny-shapes/upsampler/model
$PY scripts/ship_model.py runs/tiny-shapes/upsampler/model/upsampler src/videoldm/assets/tiny-shapes/upsampler
