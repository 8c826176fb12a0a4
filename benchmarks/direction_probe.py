"""The direction probe from the command line: on a model folder, or on a training run's checkpoints.

Same noise, the four direction words: do the four videos move four ways? (`videoldm.evaluation.direction_probe`.)
The trainer runs the same probe every `train.probe_every` steps; this script probes a finished model, or the
checkpoints of a run that did not have it switched on (each checkpoint's weights on the config's stage).

Run: python -m benchmarks.direction_probe --model DIR [--image-only]
     python -m benchmarks.direction_probe --config RUN.yaml [--every 200]   (all checkpoints of the run)
     add --advantage for the word advantage per noise level (`word_advantage`: how much the denoiser's error grows
     when the direction word is wrong; seconds, and it moves long before sampled videos change direction), or
     --advantage-only to skip the sampled videos.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from videoldm.cpu import tune_cpu
from videoldm.evaluation.direction_probe import GROUPS, ProbeResult, direction_probe


def probe_model(
    model: Path,
    *,
    groups: int,
    steps: int,
    image_only: bool,
    num_frames: int,
    seeds: tuple[int, ...] = (0,),
    wrap: bool = False,
    guidance_scale: float = 7.5,
    noise_correlation: float | None = None,
) -> str:
    """The probe once per seed (each seed's groups get noise `seed + g`), one line each, then the sums: the
    48-caption judgement of docs/keyframes.md is `--seeds 0 100 --wrap --steps 15`."""
    from videoldm import VideoLDMPipeline

    pipe = VideoLDMPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    lines, every_seed = [], ProbeResult(groups=[])
    for seed in seeds:
        result = direction_probe(
            pipe,
            groups=GROUPS[:groups],
            num_inference_steps=steps,
            image_only=image_only,
            num_frames=num_frames,
            seed=seed,
            wrap=wrap,
            guidance_scale=guidance_scale,
            noise_correlation=noise_correlation,
        )
        lines.append(f"{model} seed {seed}: {result.line()} {result.moved}")
        print(lines[-1], flush=True)
        every_seed.extend(result)  # one row per group and seed: the counts add up
    lines.append(f"all seeds: {every_seed.line()}")
    return "\n".join(lines)


def probe_run(config_path: Path, *, groups: int, steps: int, every: int, advantage: bool, sample: bool) -> list[str]:
    """Each checkpoint of the run (every `every` steps) loaded onto the config's stage and probed."""
    from videoldm.training.samples import sampling_pipeline, stage_word_advantage
    from videoldm.training.stages import build_stage, load_config

    config = load_config(config_path)
    stage = build_stage(config)
    trainable = stage.trainable()
    pipe, image_only = sampling_pipeline(stage, stage.get_text_encoder())
    lines = []
    for checkpoint in sorted((config.output_dir / "checkpoints").glob("step-*")):
        step = int(checkpoint.name.removeprefix("step-"))
        if step % every or not (checkpoint / "weights.safetensors").is_file():
            continue
        trainable.load_state_dict(load_file(str(checkpoint / "weights.safetensors")), strict=False)
        started = time.perf_counter()
        result = ProbeResult(groups=list(GROUPS[:groups]))
        if sample:
            result = direction_probe(
                pipe,
                groups=GROUPS[:groups],
                num_inference_steps=steps,
                image_only=image_only,
                num_frames=config.data.num_frames,
            )
        if advantage:
            result.advantage = stage_word_advantage(stage, pipe.unet, pipe.text_encoder)
        line = result.line() if sample else result.line().split("; ", 1)[-1]
        lines.append(f"step {step}: {line} ({time.perf_counter() - started:.0f} s) {result.moved}")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="a Video LDM folder")
    source.add_argument("--config", type=Path, help="a training config whose run has checkpoints")
    parser.add_argument("--groups", type=int, default=len(GROUPS), help=f"colour/shape groups, 1-{len(GROUPS)}")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps")
    parser.add_argument("--every", type=int, default=1, help="with --config: probe checkpoints at multiples of this")
    parser.add_argument("--frames", type=int, default=8, help="with --model: frames per video")
    parser.add_argument("--image-only", action="store_true", help="with --model: every alpha = 1 (the baseline)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="with --model: noise seeds (one probe each)")
    parser.add_argument("--wrap", action="store_true", help="with --model: read motion on the wrapping world's torus")
    parser.add_argument("--guidance", type=float, default=7.5, help="with --model: text guidance scale")
    parser.add_argument(
        "--noise-correlation", type=float, help="with --model: the frames' noise correlation (default: the model's)"
    )
    parser.add_argument("--advantage", action="store_true", help="with --config: also the word advantage")
    parser.add_argument("--advantage-only", action="store_true", help="with --config: only the word advantage")
    args = parser.parse_args(argv)
    if not 1 <= args.groups <= len(GROUPS):
        sys.exit(f"error: --groups must be in 1..{len(GROUPS)}, got {args.groups}")
    tune_cpu()  # as the command does
    if args.model is not None:
        print(
            probe_model(
                args.model,
                groups=args.groups,
                steps=args.steps,
                image_only=args.image_only,
                num_frames=args.frames,
                seeds=tuple(args.seeds),
                wrap=args.wrap,
                guidance_scale=args.guidance,
                noise_correlation=args.noise_correlation,
            ).splitlines()[-1]
        )
    else:
        probe_run(
            args.config,
            groups=args.groups,
            steps=args.steps,
            every=args.every,
            advantage=args.advantage or args.advantage_only,
            sample=not args.advantage_only,
        )


if __name__ == "__main__":
    main()
