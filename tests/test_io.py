"""videoldm.io: mp4/gif round trips, frame-exact partial decoding (with seeking), atomic writes, clear errors."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from videoldm.io import (
    VideoReadError,
    image_grid,
    probe_video,
    read_image,
    read_video,
    read_video_frames,
    write_image_grid,
    write_video,
)


def counter_video(num_frames: int, size: int = 16) -> torch.Tensor:
    """(3, T, size, size): frame i is flat with R = 16 * (i % 16) + 8 and G = 16 * (i // 16) + 8."""
    video = torch.zeros(3, num_frames, size, size)
    for i in range(num_frames):
        video[0, i] = (16 * (i % 16) + 8) / 127.5 - 1
        video[1, i] = (16 * (i // 16) + 8) / 127.5 - 1
    return video


def decode_counter(video: torch.Tensor) -> list[int]:
    """The frame numbers encoded by `counter_video` (robust to a few grey levels of compression error)."""
    pixels = (video + 1) * 127.5
    r, g = pixels[0].mean((-2, -1)), pixels[1].mean((-2, -1))
    return [int(16 * ((gi - 8) / 16).round() + ((ri - 8) / 16).round()) for ri, gi in zip(r, g, strict=True)]


def smooth_video(num_frames: int = 12, height: int = 32, width: int = 48) -> torch.Tensor:
    """A moving colour gradient: compressible, so a lossy codec should stay close."""
    t = torch.linspace(0, 1, num_frames)[:, None, None]
    y = torch.linspace(-1, 1, height)[None, :, None]
    x = torch.linspace(-1, 1, width)[None, None, :]
    shape = (num_frames, height, width)
    channels = [(x + t).clamp(-1, 1), y, -(x * y) * 0.8]
    return torch.stack([c.expand(shape) for c in channels]).float()


def test_mp4_round_trip_is_close_and_keeps_fps(tmp_path):
    video = smooth_video()
    path = write_video(tmp_path / "a.mp4", video, fps=12)
    decoded, fps = read_video(path)
    assert decoded.shape == video.shape
    assert fps == 12
    assert (decoded - video).abs().mean() < 0.03
    assert decoded.min() >= -1 and decoded.max() <= 1
    assert probe_video(path).num_frames == 12


def test_mp4_keeps_saturated_colours(tmp_path):
    video = torch.full((3, 4, 32, 32), -0.2)
    video[:, :, 8:24, 8:24] = torch.tensor([0.8, -0.76, -0.76])[:, None, None, None]  # red square on grey
    decoded, _ = read_video(write_video(tmp_path / "red.mp4", video))
    centre = (decoded[:, :, 12:20, 12:20] + 1) * 127.5
    assert (centre - torch.tensor([230.0, 30.0, 30.0])[:, None, None, None]).abs().max() < 8


def test_lossless_mp4_is_exact_where_yuv420p_blurs_colour_edges(tmp_path):
    """One-pixel colour stripes: yuv420p shares each 2x2 block's colour, so they come back smeared; the lossless
    RGB mp4 gives back every uint8 value."""
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (3, 3, 16, 16), generator=g).float() / 127.5 - 1
    video[:, :, :, ::2] = torch.tensor([0.8, -0.76, -0.76])[:, None, None, None]  # red every other column
    exact, _ = read_video(write_video(tmp_path / "exact.mp4", video, lossless=True))
    assert torch.equal(((exact + 1) * 127.5).round(), ((video + 1) * 127.5).round())
    lossy, _ = read_video(write_video(tmp_path / "lossy.mp4", video))
    assert ((lossy - video).abs() * 127.5).amax() > 30  # the chroma of 2x2 blocks shared
    with pytest.raises(ValueError, match=r"only \.mp4"):
        write_video(tmp_path / "a.gif", video, lossless=True)


def test_same_tensor_gives_byte_identical_mp4(tmp_path):
    video = smooth_video()
    a = write_video(tmp_path / "a.mp4", video).read_bytes()
    b = write_video(tmp_path / "b.mp4", video).read_bytes()
    assert a == b


def test_odd_sizes_are_padded_to_even(tmp_path):
    video = smooth_video(height=31, width=45)
    decoded, _ = read_video(write_video(tmp_path / "odd.mp4", video))
    assert decoded.shape[-2:] == (32, 46)
    assert (decoded[:, :, :31, :45] - video).abs().mean() < 0.03


def test_gif_round_trip(tmp_path):
    video = smooth_video(num_frames=6)
    decoded, fps = read_video(write_video(tmp_path / "a.gif", video, fps=8))
    assert decoded.shape == video.shape
    assert fps == pytest.approx(8, rel=0.05)
    assert (decoded - video).abs().mean() < 0.05  # 256-colour adaptive palette per frame


@pytest.mark.parametrize("codec, suffix", [("libvpx-vp9", ".webm"), ("libx264", ".mkv"), ("libx264", ".mov")])
def test_reads_other_containers(tmp_path, codec, suffix):
    path = tmp_path / f"clip{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(10):
            frame = np.full((16, 16, 3), 20 * i, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    video, fps = read_video(path)
    assert video.shape == (3, 10, 16, 16)
    assert fps == pytest.approx(10)
    brightness = ((video.mean((0, 2, 3)) + 1) * 127.5).tolist()
    assert brightness == pytest.approx([20 * i for i in range(10)], abs=6)
    assert probe_video(path).num_frames == 10


def test_max_frames_stops_early(tmp_path):
    path = write_video(tmp_path / "c.mp4", counter_video(20))
    video, _ = read_video(path, max_frames=5)
    assert decode_counter(video) == [0, 1, 2, 3, 4]


def test_read_video_frames_picks_exact_frames(tmp_path):
    path = write_video(tmp_path / "c.mp4", counter_video(40))
    indices = [0, 3, 3, 17, 39]
    assert decode_counter(read_video_frames(path, indices)) == indices


def test_read_video_frames_after_seeking(tmp_path):
    # Keyframes every 10 frames: the reader seeks to the one before frame 150 and must still count right.
    path = tmp_path / "long.mp4"
    video = counter_video(200)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "10", "crf": "10"})
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for frame in ((video.permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    for indices in ([150, 151, 160], [57, 58, 199], [199]):
        assert decode_counter(read_video_frames(path, indices)) == indices


def test_missing_frame_is_a_read_error(tmp_path):
    path = write_video(tmp_path / "c.mp4", counter_video(8))
    with pytest.raises(VideoReadError, match="frame 8"):
        read_video_frames(path, [0, 8])


def test_unreadable_files_raise_read_error(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(write_video(tmp_path / "ok.mp4", smooth_video()).read_bytes()[:1500])
    for path in (garbage, truncated, tmp_path / "missing.mp4"):
        with pytest.raises(VideoReadError) as info:
            read_video(path)
        assert info.value.path == path
        assert str(path) in str(info.value)
        with pytest.raises(VideoReadError):
            probe_video(path)


def test_write_rejects_unknown_extension_and_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\.avi.*\.mp4.*\.gif"):
        write_video(tmp_path / "a.avi", smooth_video())
    with pytest.raises(ValueError, match="C, T, H, W"):
        write_video(tmp_path / "a.mp4", torch.zeros(12, 32, 48))
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic_on_failure(tmp_path):
    path = write_video(tmp_path / "a.mp4", smooth_video())
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_video(path, torch.zeros(5, 4, 8, 8))  # 5 channels: fails before anything is written
    with pytest.raises(ValueError):
        write_video(path, smooth_video(), fps=0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]  # no temp file left behind


def test_image_grid_layout_and_png_round_trip(tmp_path):
    videos = torch.stack([smooth_video(num_frames=3, height=8, width=8) * s for s in (1.0, -1.0)])  # (2, 3, 3, 8, 8)
    grid = image_grid(videos, padding=2)
    assert grid.shape == (3, 2 * 10 + 2, 3 * 10 + 2)  # rows = videos, columns = frames
    assert torch.equal(grid[:, 12:20, 22:30], videos[1, :, 2])
    path = write_image_grid(tmp_path / "grid.png", videos)
    assert (read_image(path) - grid).abs().max() <= 1 / 127.5 + 1e-6
    with pytest.raises(ValueError, match="extension"):
        write_image_grid(tmp_path / "grid.tiff", videos)
