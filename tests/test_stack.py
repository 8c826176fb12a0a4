"""The text-to-video stack (pipelines/stack.py): key frames -> x4 -> x4 -> one decode, on a tiny folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interpolation_fixtures import save_tiny_interpolation_model
from videoldm.pipelines import VideoLDMStackPipeline
from videoldm.pipelines.stack import MAX_KEYFRAMES, keyframes_for, stack_frames

PROMPT = "a red circle moving left"
FAST = {"num_inference_steps": 2, "interpolation_steps": 2}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> VideoLDMStackPipeline:
    folder = save_tiny_interpolation_model(tmp_path_factory.mktemp("stack") / "tiny")
    pipe = VideoLDMStackPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _seed(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_frame_counts_map_onto_the_fewest_keyframes() -> None:
    assert stack_frames(8) == 113 and keyframes_for(113) == 8  # the paper's 8 -> 29 -> 113
    assert [keyframes_for(n) for n in (2, 16, 17, 18, 33, 64, 65, 66)] == [2, 2, 2, 3, 3, 5, 5, 6]
    assert keyframes_for(stack_frames(MAX_KEYFRAMES)) == MAX_KEYFRAMES
    for bad in (0, 1, stack_frames(MAX_KEYFRAMES) + 1):
        with pytest.raises(ValueError, match="num_frames must be an integer in"):
            keyframes_for(bad)


def test_one_set_of_components_is_loaded(pipe: VideoLDMStackPipeline) -> None:
    keyframes, interpolation = pipe.keyframes, pipe.interpolation
    assert interpolation.unet.unet is keyframes.unet.unet  # one image UNet, two temporal adapters
    assert interpolation.unet.temporal is not keyframes.unet.temporal
    assert interpolation.autoencoder is keyframes.autoencoder
    assert interpolation.text_encoder is keyframes.text_encoder
    assert interpolation.num_conditions == 2 and interpolation.window_frames == 9


def test_keyframes_are_the_keyframe_pipelines_and_the_video_is_trimmed(pipe: VideoLDMStackPipeline) -> None:
    full = pipe(PROMPT, num_frames=33, generator=_seed(0), output_type="latent", **FAST)
    assert full.num_keyframes == 3 and full.frames.shape == (1, 4, 33, 8, 8)
    alone = pipe.keyframes(PROMPT, num_frames=3, num_inference_steps=2, generator=_seed(0), output_type="latent")
    # every 16th frame is a key frame, exactly: the interpolation passes paste their given frames back
    torch.testing.assert_close(full.frames[:, :, ::16], alone.frames, rtol=0, atol=0)
    # 20 frames: the same 3 key frames and passes, trimmed before decoding
    trimmed = pipe(PROMPT, num_frames=20, generator=_seed(0), output_type="latent", **FAST)
    assert trimmed.num_keyframes == 3
    torch.testing.assert_close(trimmed.frames, full.frames[:, :, :20], rtol=0, atol=0)


def test_same_seed_same_video_decoded_once(pipe: VideoLDMStackPipeline, monkeypatch) -> None:
    autoencoder = pipe.keyframes.autoencoder
    calls = {"decode": 0, "encode": 0}
    for name in calls:
        original = getattr(autoencoder, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(autoencoder, name, counted)
    first = pipe(PROMPT, num_frames=17, generator=_seed(1), **FAST).frames
    assert calls == {"decode": 1, "encode": 0}  # latents pass between the stages; one decode at the end
    again = pipe(PROMPT, num_frames=17, generator=_seed(1), **FAST).frames
    other = pipe(PROMPT, num_frames=17, generator=_seed(2), **FAST).frames
    assert first.shape == (1, 3, 17, 16, 16) and first.min() >= -1 and first.max() <= 1
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)


def test_batches_and_numpy_output(pipe: VideoLDMStackPipeline) -> None:
    out = pipe([PROMPT, "a blue square moving up"], num_frames=5, generator=_seed(3), output_type="np", **FAST)
    assert out.frames.shape == (2, 5, 16, 16, 3) and out.frames.dtype.name == "uint8"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 1}, "num_frames must be an integer in"),
        ({"interpolation_steps": 0}, "interpolation_steps must be an integer >= 1"),
        ({"interpolation_strength": 1.5}, "interpolation_strength must be in"),
        ({"interpolation_strength": (0.4,)}, "interpolation_strength takes one value or 2"),
        ({"context_guidance_scale": -1.0}, "context_guidance_scale must be a number >= 0"),
        ({"output_type": "pil"}, "output_type must be one of"),
    ],
)
def test_bad_arguments_fail_before_sampling(pipe: VideoLDMStackPipeline, monkeypatch, kwargs, message) -> None:
    monkeypatch.setattr(pipe.keyframes, "_sample", lambda *a, **k: pytest.fail("sampled before checking"))
    with pytest.raises(ValueError, match=message):
        pipe(PROMPT, **{**FAST, **kwargs})


def test_folder_without_interpolation_is_refused(tmp_path: Path) -> None:
    from test_pipeline_fixtures import write_tiny_video_ldm

    folder = write_tiny_video_ldm(tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="no interpolation/temporal/"):
        VideoLDMStackPipeline.from_pretrained(folder)


@pytest.mark.parametrize("mode", ["circular", "circular_continued"])
def test_circular_key_frames_make_the_interpolation_circular_too(tmp_path: Path, mode: str) -> None:
    import json

    folder = save_tiny_interpolation_model(tmp_path / "tiny")
    config = folder / "temporal" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "spatial_padding": mode}))
    pipe = VideoLDMStackPipeline.from_pretrained(folder)
    # One image UNet, padded for the key frames' world: the interpolation model runs on the same world.
    assert pipe.keyframes.unet.spatial_padding == pipe.interpolation.unet.spatial_padding == mode
    assert (
        VideoLDMStackPipeline.from_pretrained(
            save_tiny_interpolation_model(tmp_path / "plain")
        ).interpolation.unet.spatial_padding
        == "zeros"
    )
