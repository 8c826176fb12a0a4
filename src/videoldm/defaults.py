"""Sampling defaults shared by the pipelines, `videoldm generate` and the web page.

A light module (no torch import): the CLI names these in its option defaults before anything heavy loads.
"""

from __future__ import annotations

# DDIM steps of the text-to-video model (the stack's key frames). 15, not 25: the 24-video direction probe of the
# shipped model (6 colour/shape groups x 4 direction words, guidance 7.5, seed 0) is right in 22/24 at 15 steps and
# 21/24 at 25 (10 steps: 16/24), and 10 fewer steps save ~5 s of the default command (docs/keyframes.md, session 12).
DEFAULT_STEPS = 15
