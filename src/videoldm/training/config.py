"""Training configs: one YAML file per stage, validated before any work.

An unknown key, a wrong type or a missing input path is a `ConfigError` naming the key (e.g. `train.lr`).
The sections mirror the dataclasses below; `videoldm/configs/` in the package holds the shipped model's
configs. `read_config` checks what holds for every stage; `training.stages.load_config` adds the stage's own
checks (this module knows no stage, so the stages can import it).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from videoldm.text import BUILTIN_MAX_LENGTH


class ConfigError(ValueError):
    """A config problem, with the dotted key it concerns."""


@dataclass
class DataConfig:
    """Where the videos are and how clips are cut from them.

    `videos` (a folder + captions table, decoded into an in-memory cache) or `shards` (a folder written by
    `videoldm data encode`: latents and caption embeddings streamed from disk, any collection size), not both.
    The dataset is decoded (and, for latent stages, VAE-encoded) once into a cache under the run's output
    folder: the first `cache_frames` source frames of every video, at the full frame rate. A training clip is
    `num_frames` frames taken every `frame_stride` source frames from any start in the cache, so it spans
    `clip_span` source frames and `cache_frames` must be at least that (8 key frames every 16th frame: 113).

    The dreambooth stage trains on `images` instead (a folder of 3-10 pictures of one new concept, captioned
    `instance_prompt`), with `num_class_images` pictures of `class_prompt` sampled once from the frozen base model
    for prior preservation (no `class_prompt`: none; a list of prompts: the class images take them in turn).
    """

    videos: Path | None = None
    images: Path | None = None  # dreambooth stage: pictures of the new concept
    instance_prompt: str | None = None  # dreambooth: the caption of every picture, e.g. "a sks star"
    class_prompt: str | list[str] | None = None  # dreambooth: the concept's class, e.g. "a star" (None: no prior)
    num_class_images: int = 50
    shards: Path | None = None  # latent shards (diffusion stages); `size` must be the shards' frame size
    captions: Path | None = None  # default: videos/captions.csv
    size: int = 64
    num_frames: int = 8
    cache_frames: int = 32
    frame_stride: int = 1
    max_videos: int | None = None
    random_flip: bool = False  # off for the shapes world: a flip turns "moving left" into "moving right"
    # upsampler stage: one random square crop of this many output pixels per clip, on the input's grid (default 32)
    patch_size: int | None = None
    cache_dir: Path | None = None  # default: output_dir/cache; stages may share one

    @property
    def clip_span(self) -> int:
        """Source frames a training clip covers, first to last."""
        return (self.num_frames - 1) * self.frame_stride + 1


@dataclass
class ModelConfig:
    """What to train. Which keys matter depends on the stage (see the shipped configs).

    Temporal stage: on an image LDM folder it builds new temporal layers from `temporal`'s options; on a Video
    LDM folder (one with `temporal/`) it continues the saved layers, and `temporal` must be left out. With
    `fresh_temporal: true` it ignores the folder's `temporal/` and builds new, zero-initialised layers from
    `temporal`'s options on the folder's `unet/` (e.g. other options than the saved ones).
    """

    pretrained: Path | None = None  # a model folder from the previous stage (vae/, unet/, text_encoder/, ...)
    vae: dict[str, Any] | None = None  # AutoencoderKL config for the autoencoder stage
    unet: dict[str, Any] | None = None  # image stage: a fresh UNet2DConditionModel (else pretrained/unet/ is tuned)
    temporal: dict[str, Any] = field(default_factory=dict)  # TemporalAdapter options for the temporal stage
    fresh_temporal: bool = False  # temporal stage only: new layers even when pretrained/ has temporal/
    # Stages training temporal layers, for a world that wraps (`temporal.padding`; recorded in the export's
    # temporal/config.json): "circular" pads every spatial conv circularly, "circular_continued" only in clips
    # continued from given frames; None keeps the pretrained layers' padding.
    spatial_padding: Literal["zeros", "circular", "circular_continued"] | None = None
    temporal_decoder: dict[str, Any] = field(default_factory=dict)  # options for the decoder stage
    upsampler: dict[str, Any] = field(default_factory=dict)  # upsampler stage: UpsamplerConfig options
    text_encoder: str = "builtin:all-MiniLM-L6-v2"  # or a local folder with a transformers model + tokenizer
    text_max_length: int = BUILTIN_MAX_LENGTH
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    num_train_timesteps: int = 1000
    # Dreambooth stage: LoRA (peft) of this rank on the UNet's `lora_targets` instead of full fine-tuning; the
    # export merges it into unet/. `lora_alpha` defaults to the rank (scale 1); the default targets are
    # diffusers' `train_dreambooth_lora.py`'s: the attention projections.
    lora_rank: int | None = None
    lora_alpha: float | None = None
    lora_targets: list[str] = field(default_factory=lambda: ["to_k", "to_q", "to_v", "to_out.0"])


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    # autoencoder / decoder stages
    kl_weight: float = 1e-6
    disc_lr: float = 1e-4
    disc_start_step: int = 0
    disc_weight: float = 0.5
    lpips_weights: Path | None = None
    flicker_weight: float = 0.0  # decoder: L1 on frame differences (the flicker metric) beside the per-frame L1


@dataclass
class TrainConfig:
    """How long and how to train. `mixed_precision: no` may be written unquoted: YAML reads it as false, and
    false means "no" here (an unquoted `yes` / `on` / `true` is a ConfigError asking for a quoted choice)."""

    max_steps: int = 1000
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    # An unquoted `no` (YAML's boolean false) is read as "no"; an unquoted yes / on / true is an error.
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    ema_decay: float | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int | None = None
    # Diffusion stages on shapes-world data: the direction probe (evaluation/direction_probe.py: do the four
    # direction words give four motions from one noise?) every N steps, printed and logged beside the loss.
    probe_every: int | None = None
    log_every: int = 10
    seed: int = 0
    caption_dropout: float = 0.1
    image_fraction: float = 0.0  # temporal stage: share of clips trained as images (image_only_indicator)
    # Interpolation stage: share of clips trained with an all-zero context (no given frames), so that the model
    # also predicts without the context -- the unconditional branch of context guidance (PAPER.md section 4).
    # Upsampler stage: the same for its low-resolution input (input guidance, `input_guidance_scale`).
    context_dropout: float = 0.0
    # Interpolation stage: share of clips whose new frames are noised from the given frames' linear blend instead
    # of from the truth, at a diffusion time from `blend_start_range` (default: `timestep_range`), with the noise
    # target shifted so that the model still predicts the truth. That is what the pipeline's first step sees at
    # strength < 1 (it starts from the noised blend, ghosts included); trained on the truth alone the model keeps
    # part of the ghosts and draws the object too near the given frames (docs/interpolation.md, session 14).
    blend_start: float = 0.0
    blend_start_range: tuple[int, int] | None = None
    # Prediction stage: the shares of clips given their first S = 0, 1, 2, ... frames as context (S = 0: no
    # context, the key-frame model and context guidance's unconditional branch). Default (0.2, 0.2, 0.6).
    context_frame_probs: list[float] | None = None
    # Prediction stage on the wrapping world: draw the S = 0 clips only among those whose object stays inside the
    # frame throughout. S = 0 is the text-to-video key-frame model, built on a zero-padded image UNet that cannot
    # draw an object split over the torus edge as one object: trained on such clips it learns fragments and second
    # copies (identity 2/24 on the probe, docs/keyframes.md); clips with context (S > 0) still cross the edges.
    context_free_in_view: bool = False
    # Prediction stage: train only the context encoder and each layer's context projection. Trained with the rest,
    # the shared layers' key frames lost identity (one object in 39/48 probe videos, from 44/48, session 23); these
    # parameters never change an S = 0 output, so the key frames stay exactly the pretrained ones.
    context_only: bool = False
    # Dreambooth stage: the weight of the prior-preservation loss (the class half of each batch).
    prior_loss_weight: float = 1.0
    # Diffusion stages. "epsilon": the plain eps-MSE of the image LDM. "edm": each sample's loss in x0 terms
    # weighted by (1 + SNR) -- EDM's weighting with sigma_data = 1, as in SVD, equal to the v-objective -- which
    # for an eps model is eps-MSE / alpha_bar(t). The plain eps-MSE weights x0 errors by SNR, which all but
    # vanishes at the high noise levels where a clip's motion is decided (docs/tiny-model.md).
    loss_weighting: Literal["epsilon", "edm"] = "epsilon"
    timestep_range: tuple[int, int] | None = None  # [first, last] diffusion time drawn; default: all of them
    # Video diffusion stages: the frames' noise correlates by this much (`diffusion.noise.correlate_frames`,
    # PYoCo's mixed prior); a model trained with it must be sampled with it (`noise_correlation` of the pipeline).
    noise_correlation: float = 0.0
    num_threads: int | None = None
    # A wall-clock budget: stop after the first step past it, checkpoint and export (the step count reached is
    # printed and logged). Off by default; the shipped model's runs record the steps they reached.
    max_minutes: float | None = None


@dataclass
class RunConfig:
    stage: str  # a name in `training.stages.STAGES`, checked there
    output_dir: Path
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def read_config(path: str | Path, *, check: bool = True) -> RunConfig:
    """Read a YAML config and run the checks every stage shares; relative paths resolve against the working
    directory. Use `training.stages.load_config`, which also checks the stage. `check=False` returns the options
    unchecked (a benchmark that takes only the options; the folders it names need not exist)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    config = _build(RunConfig, raw, "", Path.cwd())
    if check:
        _check(config)
    return config


def _check(config: RunConfig) -> None:
    _check_source(config.data)
    if config.model.pretrained is not None and not config.model.pretrained.is_dir():
        raise ConfigError(f"model.pretrained: folder {config.model.pretrained} does not exist")
    if config.optim.lpips_weights is not None and not config.optim.lpips_weights.is_file():
        raise ConfigError(f"optim.lpips_weights: file {config.optim.lpips_weights} does not exist")
    _check_data(config.data)
    for key in ("timestep_range", "blend_start_range"):
        _check_timestep_range(config, key)
    for key in ("max_steps", "batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every"):
        if getattr(config.train, key) < 1:
            raise ConfigError(f"train.{key}: must be >= 1, got {getattr(config.train, key)}")
    if not 0.0 <= config.train.noise_correlation < 1.0:
        raise ConfigError(f"train.noise_correlation: must be in [0, 1), got {config.train.noise_correlation}")


def _check_source(data: DataConfig) -> None:
    if data.images is not None:
        if data.videos is not None or data.shards is not None:
            raise ConfigError("data.images: give data.images (dreambooth) or data.videos / data.shards, not both")
        if not data.images.is_dir():
            raise ConfigError(f"data.images: folder {data.images} does not exist")
        return
    if data.videos is not None and data.shards is not None:
        raise ConfigError(
            f"data.videos and data.shards: give one, not both (videos {data.videos} are decoded into a cache; "
            f"shards {data.shards} were encoded from videos already)"
        )
    if data.shards is not None:
        if not (data.shards / "dataset.json").is_file():
            raise ConfigError(
                f"data.shards: {data.shards / 'dataset.json'} does not exist (write shards with `videoldm data encode`)"
            )
        return
    if data.videos is None:
        raise ConfigError(
            "data.videos: missing required key (a video folder; or data.shards: a shard folder; or, for stage "
            "'dreambooth', data.images: a picture folder)"
        )
    if not data.videos.is_dir():
        raise ConfigError(f"data.videos: folder {data.videos} does not exist")
    captions = data.captions or data.videos / "captions.csv"
    if not captions.is_file():
        raise ConfigError(f"data.captions: file {captions} does not exist")


def _check_data(data: DataConfig) -> None:
    for key in ("num_frames", "cache_frames", "frame_stride"):
        if getattr(data, key) < 1:
            raise ConfigError(f"data.{key}: must be >= 1, got {getattr(data, key)}")
    if data.videos is not None and data.clip_span > data.cache_frames:  # shards: checked against their frames
        raise ConfigError(
            f"data.cache_frames ({data.cache_frames}) counts source frames, and a clip of data.num_frames "
            f"({data.num_frames}) frames every data.frame_stride ({data.frame_stride}) source frames spans "
            f"{data.clip_span}: set data.cache_frames >= {data.clip_span} (the videos need that many frames)"
        )


def _check_timestep_range(config: RunConfig, key: str) -> None:
    """train.`key`, a range of diffusion times: [first, last] inside the schedule."""
    value = getattr(config.train, key)
    if value is None:
        return
    first, last = value
    steps = config.model.num_train_timesteps
    if not 0 <= first <= last < steps:
        raise ConfigError(
            f"train.{key}: expected [first, last] with 0 <= first <= last < model.num_train_timesteps "
            f"({steps}), got [{first}, {last}]"
        )


def _build(cls: type, raw: dict[str, Any], prefix: str, base: Path) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(f"{key}: unknown key; known keys here: {sorted(fields)}")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: missing required key")
            continue
        values[name] = _coerce(hints[name], raw[name], key, base)
    return cls(**values)


def _coerce(tp: Any, value: Any, key: str, base: Path) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(option, value, key, base)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, f"{key}.", base)
    if origin is Literal:
        return _literal(typing.get_args(tp), value, key)
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a path string, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{key}[{i}]", base) for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [_coerce(arg, v, f"{key}[{i}]", base) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    return _scalar(tp, value, key)


def _literal(choices: tuple[Any, ...], value: Any, key: str) -> Any:
    # YAML 1.1 (PyYAML) reads unquoted no / off / false as False and yes / on / true as True. A choice named
    # "no" (train.mixed_precision) is what an unquoted `no` means; any other boolean is an unquoted word that
    # was meant as a string: say to quote it rather than print "got False".
    if isinstance(value, bool):
        if value is False and "no" in choices:
            return "no"
        raise ConfigError(
            f"{key}: expected one of {list(choices)}, got the YAML boolean {str(value).lower()} (unquoted yes / no /"
            f" on / off / true / false are booleans in YAML): quote the value, e.g. {key.rsplit('.', 1)[-1]}: "
            f'"{choices[0]}"'
        )
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {list(choices)}, got {value!r}")
    return value


def _scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML reads "1e-4" as a string: accept numeric strings for floats only.
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from err
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
