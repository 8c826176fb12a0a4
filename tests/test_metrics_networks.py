"""The metric networks with random weights: shapes, finiteness, weight files, missing-weights errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from videoldm.evaluation.i3d import InceptionI3d, i3d_features, load_i3d, preprocess_for_i3d
from videoldm.evaluation.inception import FIDInceptionV3, inception_features, load_inception


def signal_preserving(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights that keep activations O(1) through a deep ReLU net (default init shrinks them to ~1e-8)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model.eval()


def videos(b=2, t=10, h=24, w=32, seed=0):
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_i3d_logits_and_pool_features_have_the_right_shape_and_are_finite():
    model = signal_preserving(InceptionI3d())
    clips = videos()
    logits = i3d_features(model, clips)
    pooled = i3d_features(model, clips, features="pool")
    assert logits.shape == (2, 400) and pooled.shape == (2, 1024)
    assert logits.isfinite().all() and pooled.isfinite().all()
    assert (logits[0] - logits[1]).abs().max() > 0  # different clips, different features
    # batch independence (eval-mode BatchNorm): one clip alone gives the same features
    torch.testing.assert_close(i3d_features(model, clips[:1]), logits[:1], rtol=1e-4, atol=1e-5)


def test_i3d_preprocessing_resizes_to_224_and_keeps_the_range():
    out = preprocess_for_i3d(videos(b=1, t=3) * 1.5)
    assert out.shape == (1, 3, 3, 224, 224)
    assert out.min() >= -1 and out.max() <= 1


def test_inception_pool3_features_have_the_right_shape_and_are_finite():
    model = signal_preserving(FIDInceptionV3())
    frames = videos(b=3, t=1)[:, :, 0]
    feats = inception_features(model, frames)
    assert feats.shape == (3, 2048) and feats.isfinite().all()
    assert feats.std() > 1e-3


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_i3d_weights_round_trip_through_a_file(tmp_path, suffix):
    model = signal_preserving(InceptionI3d(num_classes=7), seed=1)
    path = tmp_path / f"i3d{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = load_i3d(path)
    clip = videos(b=1)
    torch.testing.assert_close(i3d_features(loaded, clip), i3d_features(model, clip))


def test_missing_weights_say_which_file_is_needed(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"I3D weights.*rgb_imagenet\.pt"):
        load_i3d(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match=r"no path was given.*pt_inception-2015-12-05"):
        load_inception(None)


def test_wrong_weights_name_the_mismatching_keys(tmp_path):
    path = tmp_path / "not_inception.safetensors"
    save_file({"fc.weight": torch.zeros(1008, 2048), "something.else": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match=r"not_inception\.safetensors.*missing keys.*unexpected keys.*something"):
        load_inception(path)
