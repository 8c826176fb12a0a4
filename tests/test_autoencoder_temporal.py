"""The video autoencoder: identity at init, frozen image VAE, encode/decode API, temporal save/load and errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from autoencoder_fixtures import perturb_temporal, tiny_vae, tiny_video
from videoldm.autoencoder import VideoAutoencoder, load_video_autoencoder
from videoldm.layout import WEIGHTS_NAME


def image_decode_per_frame(vae, latents: torch.Tensor) -> torch.Tensor:
    """Reference: the image VAE's own decode of every frame alone. latents (B, C, T, h, w) scaled."""
    frames = [vae.decode(latents[:, :, i] / vae.config.scaling_factor).sample for i in range(latents.shape[2])]
    return torch.stack(frames, dim=2)


@pytest.mark.parametrize("options", [{}, {"temporal_attention": True, "attention_heads": 2, "kernel_size": (3, 3, 3)}])
def test_fresh_temporal_decoder_equals_image_decoder(options):
    vae = tiny_vae()
    video_ae = VideoAutoencoder.from_vae(vae, **options)
    latents = torch.randn(2, 4, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = image_decode_per_frame(vae, latents)
        video = video_ae.decode(latents)
        image = video_ae.decode(latents, image_decoder=True)
    assert video.shape == (2, 3, 5, 16, 16)
    assert (video - reference).abs().max() <= 1e-5
    assert (image - reference).abs().max() <= 1e-5
    # The layers are where the brief puts them: every decoder ResNet block, mid attention (if asked), conv_out.
    names = [s["name"] for s in video_ae.temporal.config.layer_specs]
    assert names.count("decoder.conv_out") == 1
    assert sum(".resnets." in n for n in names) == 2 + 2 * 2  # mid block: 2; two up blocks of 2
    assert ("decoder.mid_block.attentions.0" in names) == bool(options)


def test_trained_temporal_layers_change_the_output_and_image_decoder_switch_ignores_them():
    vae = tiny_vae()
    video_ae = VideoAutoencoder.from_vae(vae)
    perturb_temporal(video_ae)
    latents = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = image_decode_per_frame(vae, latents)
        assert (video_ae.decode(latents) - reference).abs().max() > 1e-2
        assert (video_ae.decode(latents, image_decoder=True) - reference).abs().max() <= 1e-5
        # Outside a video decode the hooks do nothing: the wrapped VAE is still the image VAE.
        torch.testing.assert_close(vae.decode(latents[:, :, 0] / vae.config.scaling_factor).sample, reference[:, :, 0])


def test_deep_copy_runs_its_own_temporal_layers():
    import copy

    video_ae = VideoAutoencoder.from_vae(tiny_vae())
    perturb_temporal(video_ae)
    twin = copy.deepcopy(video_ae)
    latents = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = video_ae.decode(latents)
        torch.testing.assert_close(twin.decode(latents), before)
        for p in twin.temporal.parameters():  # the copy's layers, not the original's, must run in the copy
            p.mul_(2)
        assert (twin.decode(latents) - before).abs().max() > 1e-3
        assert torch.equal(video_ae.decode(latents), before)


def test_temporal_layers_mix_frames_within_a_clip_only():
    video_ae = VideoAutoencoder.from_vae(tiny_vae())
    perturb_temporal(video_ae)
    latents = torch.randn(2, 4, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    changed = latents.clone()
    changed[1, :, 3] += 1.0
    with torch.no_grad():
        a, b = video_ae.decode(latents), video_ae.decode(changed)
    assert torch.equal(a[0], b[0])  # the other clip is untouched
    assert (a[1, :, 2] - b[1, :, 2]).abs().max() > 1e-4  # a neighbouring frame of the same clip moves


def test_encode_is_the_scaled_posterior_mean_and_shapes():
    vae = tiny_vae()
    video_ae = VideoAutoencoder.from_vae(vae)
    video = tiny_video(batch=2, frames=3)
    latents = video_ae.encode(video)
    assert latents.shape == (2, 4, 3, 8, 8)
    with torch.no_grad():
        mean = vae.encode(video[:, :, 1]).latent_dist.mean
    torch.testing.assert_close(latents[:, :, 1], mean * vae.config.scaling_factor)
    torch.testing.assert_close(video_ae.encode(video, chunk_size=2), latents)
    sampled = video_ae.encode(video, sample=True, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == latents.shape and not torch.equal(sampled, latents)
    assert video_ae(video).shape == video.shape


def test_freeze_spatial_leaves_only_temporal_parameters_trainable():
    video_ae = VideoAutoencoder.from_vae(tiny_vae(), temporal_attention=True)
    video_ae.freeze_spatial()
    trainable = {n for n, p in video_ae.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("temporal.") for n in trainable)
    assert {id(p) for p in video_ae.temporal_parameters()} == {id(p) for p in video_ae.temporal.parameters()}
    assert video_ae.last_layer.requires_grad and video_ae.last_layer.shape == (3, 3, 3, 1, 1)
    # Image VAE parameter names are the diffusers ones: SD VAE weights load as they are.
    assert set(video_ae.vae.state_dict()) == set(tiny_vae().state_dict())
    assert set(video_ae.alphas()) == {s["name"] for s in video_ae.temporal.config.layer_specs}


def test_gradients_reach_only_temporal_parameters():
    video_ae = VideoAutoencoder.from_vae(tiny_vae())
    video_ae.freeze_spatial()
    video = tiny_video(batch=1, frames=4)
    video_ae(video).square().mean().backward()
    grads = {n: p.grad for n, p in video_ae.named_parameters()}
    assert all(g is None for n, g in grads.items() if n.startswith("vae."))
    # Zero-initialised outputs still get a gradient, so training can leave the identity.
    assert grads["temporal.layers.decoder-conv_out.block.conv.weight"].abs().sum() > 0
    assert grads["temporal.layers.decoder-mid_block-resnets-0.block.conv2.weight"].abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    video = tiny_video(batch=1, frames=4)
    grads = []
    for checkpointing in (False, True):
        video_ae = VideoAutoencoder.from_vae(tiny_vae())
        perturb_temporal(video_ae)
        video_ae.freeze_spatial()
        if checkpointing:
            video_ae.enable_gradient_checkpointing()
        video_ae(video).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in video_ae.temporal_parameters()]))
    torch.testing.assert_close(grads[0], grads[1])
    video_ae.vae.enable_gradient_checkpointing()
    with pytest.raises(ValueError, match="gradient checkpointing"):
        video_ae(video)


def test_save_and_load_temporal_parameters_alone(tmp_path):
    vae = tiny_vae()
    video_ae = VideoAutoencoder.from_vae(vae, temporal_attention=True, max_attention_distance=2)
    perturb_temporal(video_ae)
    video_ae.save_temporal(tmp_path / "temporal_decoder")
    saved = load_file(str(tmp_path / "temporal_decoder" / WEIGHTS_NAME))
    assert set(saved) == set(video_ae.temporal.state_dict())  # temporal parameters only, no VAE weights
    loaded = VideoAutoencoder.from_vae(tiny_vae(), temporal=tmp_path / "temporal_decoder")
    latents = torch.randn(1, 4, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(latents), video_ae.decode(latents), rtol=0, atol=0)
    assert loaded.temporal.config.max_attention_distance == 2
    # the pipeline's loader: the same thing for a model folder's temporal_decoder/
    via_loader = load_video_autoencoder(tiny_vae(), tmp_path / "temporal_decoder")
    with torch.no_grad():
        torch.testing.assert_close(via_loader.decode(latents), video_ae.decode(latents), rtol=0, atol=0)


def test_model_folder_round_trip_and_image_decoder_switch(tmp_path):
    video_ae = VideoAutoencoder.from_vae(tiny_vae())
    perturb_temporal(video_ae)
    video_ae.save_pretrained(tmp_path)
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = video_ae.decode(latents)
        loaded = VideoAutoencoder.from_model_dir(tmp_path)
        torch.testing.assert_close(loaded.decode(latents), expected)
        image_only = VideoAutoencoder.from_model_dir(tmp_path, image_decoder=True)
        assert image_only.temporal is None
        torch.testing.assert_close(image_only.decode(latents), video_ae.decode(latents, image_decoder=True))
    with pytest.raises(FileNotFoundError, match="vae/"):
        VideoAutoencoder.from_model_dir(tmp_path / "missing")


def test_mismatched_temporal_weights_name_the_layer_and_shapes(tmp_path):
    VideoAutoencoder.from_vae(tiny_vae()).save_temporal(tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    state = load_file(str(weights))
    key = "temporal.layers.decoder-up_blocks-1-resnets-0.block.conv1.weight".removeprefix("temporal.")
    state[key] = torch.zeros(4, 4, 3, 1, 1)
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"decoder\.up_blocks\.1\.resnets\.0.*\(4, 4, 3, 1, 1\).*\(8, 8, 3, 1, 1\)"):
        VideoAutoencoder.from_vae(tiny_vae(), temporal=tmp_path)


def test_temporal_decoder_for_another_layout_is_refused(tmp_path):
    VideoAutoencoder.from_vae(tiny_vae()).save_temporal(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["layer_specs"][0]["name"] = "decoder.up_blocks.7.resnets.0"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"up_blocks\.7"):
        VideoAutoencoder.from_vae(tiny_vae(), temporal=tmp_path)
    config["bogus_option"] = 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="bogus_option"):
        VideoAutoencoder.from_vae(tiny_vae(), temporal=tmp_path)


def test_bad_inputs_are_clear_errors():
    video_ae = VideoAutoencoder.from_vae(tiny_vae())
    with pytest.raises(ValueError, match=r"\(B, 4, T, H, W\)"):
        video_ae.decode(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        video_ae.encode(torch.zeros(1, 4, 2, 16, 16))
    with pytest.raises(ValueError, match="kernel_size"):
        VideoAutoencoder.from_vae(tiny_vae(), kernel_size=(5, 1, 1))
    with pytest.raises(TypeError, match="not several"):
        VideoAutoencoder.from_vae(tiny_vae(), temporal="x", kernel_size=(3, 1, 1))
