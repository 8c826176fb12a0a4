#!/usr/bin/env bash
# Train the shipped tiny Video LDM on the shapes world, stage by stage, then copy it into the package (fp16).
# Usage: scripts/train_tiny_shapes.sh [EXTRA ARGS FOR EVERY `videoldm train`, e.g. --resume]
# Run from the repository root. docs/tiny-model.md records the steps and wall time of each stage.
set -euo pipefail
PY=${PYTHON:-python}
VIDEOS=${VIDEOS:-1024}
if [ ! -f data/shapes/captions.csv ]; then
  /usr/bin/time -f "data: %e s" $PY -m videoldm data shapes --out data/shapes --videos "$VIDEOS" --seed 0
fi
for stage in autoencoder image temporal temporal-continue decoder; do
  /usr/bin/time -f "$stage: %e s" $PY -m videoldm train "tiny-shapes/$stage" "$@"
done
$PY scripts/ship_model.py runs/tiny-shapes/temporal-continue/model src/videoldm/assets/tiny-shapes
$PY scripts/ship_model.py runs/tiny-shapes/decoder/model/temporal_decoder src/videoldm/assets/tiny-shapes/temporal_decoder
# The interpolation model, on the world at the paper's frame rates (docs/interpolation.md).
if [ ! -f data/shapes-paper/captions.csv ]; then
  $PY -m videoldm data shapes --out data/shapes-paper --videos 1024 --seed 0 --frames 113 --speed 0.25 0.375
fi
$PY -m videoldm train tiny-shapes/interpolation "$@"
$PY -m videoldm train tiny-shapes/interpolation-continue --resume  # phase 2 continues phase 1's run folder
for stage in interpolation-blend interpolation-polish; do
  /usr/bin/time -f "$stage: %e s" $PY -m videoldm train "tiny-shapes/$stage" "$@"
done
$PY scripts/ship_model.py runs/tiny-shapes/interpolation-polish/model/interpolation src/videoldm/assets/tiny-shapes/interpolation
# The key frames and the prediction model (docs/keyframes.md, docs/long-videos.md). The shipped key-frame layers are
# run C-2's (docs/runs/kf-c-2.yaml, continued from docs/runs/kf-c.yaml); tiny-shapes/keyframes is its run A design.
if [ ! -f data/shapes-wrap/captions.csv ]; then
  $PY -m videoldm data shapes --out data/shapes-wrap --videos 768 --seed 7 --frames 32 --speed 3.5 5.5 --wrap
fi
for stage in keyframes prediction prediction-inview; do
  /usr/bin/time -f "$stage: %e s" $PY -m videoldm train "tiny-shapes/$stage" "$@"
done
$PY scripts/ship_model.py runs/tiny-shapes/prediction-inview/model/temporal src/videoldm/assets/tiny-shapes/temporal
cp runs/tiny-shapes/prediction-inview/model/prediction.json src/videoldm/assets/tiny-shapes/prediction.json
