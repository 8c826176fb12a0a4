"""Sampling defaults shared by the pipelines, `videoldm generate` and the web page.

A light module (no torch import): the CLI names these in its option defaults before anything heavy loads.
"""

from __future__ import annotations

# DDIM steps of the text-to-video model (the stack's key frames). 15, not 25: the direction probe of the shipped
# model (24 videos per seed, guidance 7.5, seeds 0 and 100) is right in 37/48 at 15 steps, 39/48 at 25 (within the
# seed sets' swing) and 31/48 at 10; 10 fewer steps save ~3 s of the default command's ~25 s on an idle 2-core CPU
# (docs/interpolation.md, "Session 12").
DEFAULT_STEPS = 15
