"""``read_video`` (issue 21): lossless RGB clips decode to planar gbrp, whose planes are
interleaved in numpy instead of through swscale; the frames must be the very bytes
swscale's rgb24 conversion gives, for any size, and other pixel formats keep swscale."""

from __future__ import annotations

import av
import numpy as np
import pytest
from spatialalign.core.video import VideoReadError, read_video, write_video


def _swscale_rgb24(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("shape", [(9, 16, 16), (3, 15, 17), (2, 33, 7), (1, 1, 1), (2, 48, 64)])
def test_lossless_frames_equal_swscale_and_the_input(tmp_path, shape):
    frames = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    path = write_video(tmp_path / "v.mp4", frames)
    with av.open(str(path)) as container:
        assert next(container.decode(video=0)).format.name == "gbrp"
    got = read_video(path)
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, _swscale_rgb24(path))
    np.testing.assert_array_equal(got, frames)  # lossless


def test_yuv_video_still_goes_through_swscale(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    path = write_video(tmp_path / "v.mp4", frames, lossless=False)
    np.testing.assert_array_equal(read_video(path), _swscale_rgb24(path))


def test_unreadable(tmp_path):
    with pytest.raises(VideoReadError, match="not found"):
        read_video(tmp_path / "none.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    with pytest.raises(VideoReadError):
        read_video(bad)
