"""video_io: mp4 round trips (shape, count, values, fps), frame picking, GIF/PNG, clear errors."""

import errno
import os

import av
import numpy as np
import pytest
from PIL import Image

from hunyuan_video.video_io import (
    output_kind,
    read_image,
    read_video,
    to_uint8,
    video_info,
    write_frames_png,
    write_gif,
    write_output,
    write_video,
)


def _clip(t: int = 9, h: int = 32, w: int = 48) -> np.ndarray:
    """Smooth moving gradients with a distinct colour per frame (H.264 keeps them close)."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(t):
        r = (xx * 255 / (w - 1) + i * 10) % 256
        g = yy * 255 / (h - 1)
        b = np.full_like(r, 20 * i + 30)
        frames.append(np.stack([r, g, b], -1))
    return np.stack(frames).astype(np.uint8)


def test_mp4_round_trip(tmp_path):
    frames = _clip()
    path = write_video(tmp_path / "a.mp4", frames, fps=12)
    back = read_video(path)
    assert back.dtype == np.uint8 and back.shape == frames.shape
    err = np.abs(back.astype(float) - frames.astype(float))
    assert err.mean() < 4.0, err.mean()
    # each frame is closer to its own source than to any other frame: order is kept
    for i in range(len(frames)):
        dists = [np.abs(back[i].astype(float) - f).mean() for f in frames]
        assert int(np.argmin(dists)) == i
    info = video_info(path)
    assert (info.frames, info.height, info.width) == (9, 32, 48)
    assert info.fps == pytest.approx(12)


def test_fractional_fps_and_single_frame(tmp_path):
    path = write_video(tmp_path / "b.mp4", _clip(t=1), fps=29.97)
    assert read_video(path).shape == (1, 32, 48, 3)
    assert video_info(path).fps == pytest.approx(29.97, abs=0.01)


def test_read_picked_frames(tmp_path):
    frames = _clip(t=10)
    path = write_video(tmp_path / "c.mp4", frames)
    full = read_video(path)
    picked = read_video(path, indices=[6, 2, 2, 8])
    np.testing.assert_array_equal(picked, full[[6, 2, 2, 8]])
    with pytest.raises(ValueError, match="past the end"):
        read_video(path, indices=[3, 10])
    with pytest.raises(ValueError, match="empty"):
        read_video(path, indices=[])


def test_bad_frames_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even height and width"):
        write_video(tmp_path / "odd.mp4", _clip(h=31))
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", _clip().astype(np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_video(tmp_path / "g.mp4", _clip()[0])


def test_unreadable_and_truncated_files(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    for path in (bad, tmp_path / "missing.mp4"):
        with pytest.raises(ValueError, match="not a readable video"):
            read_video(path)
        with pytest.raises(ValueError, match="not a readable video"):
            video_info(path)
    # the index comes first (faststart), so a file cut short still opens; decoding then ends early or fails
    noise = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    data = write_video(tmp_path / "noise.mp4", noise).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert video_info(cut).frames == 40 and len(read_video(cut)) == 16
    with pytest.raises(ValueError, match="frame 20 asked for is past the end of the video \\(16 frames\\)"):
        read_video(cut, indices=[0, 20])
    data = write_video(tmp_path / "grad.mp4", _clip()).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="decoding failed after"):
        read_video(cut)


def test_to_uint8():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 3.0])
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 128, 255, 255])


def test_gif_and_png(tmp_path):
    frames = _clip(t=4, h=31, w=33)  # odd sizes are fine here
    gif = write_gif(tmp_path / "a.gif", frames, fps=8)
    with Image.open(gif) as im:
        assert im.n_frames == 4 and im.size == (33, 31)
    paths = write_frames_png(tmp_path / "png", frames)
    assert [p.name for p in paths] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    np.testing.assert_array_equal(read_image(paths[2])[0], frames[2])  # PNG is lossless


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_mp4_bytes_do_not_depend_on_the_cpu_count(tmp_path):
    """x264 picks its thread count from the CPUs it may use, and the file changes with it; write_video pins it."""
    rng = np.random.default_rng(0)
    frames = (_clip(t=25, h=320, w=320) * 0.7 + rng.random((25, 320, 320, 3)) * 60).astype(np.uint8)
    cpus = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cpus)})
        one = write_video(tmp_path / "one.mp4", frames).read_bytes()
    finally:
        os.sched_setaffinity(0, cpus)
    every = write_video(tmp_path / "every.mp4", frames).read_bytes()
    assert one == every


def _fail_on_frame(n: int, error: BaseException):
    """A replacement for av.VideoFrame.from_ndarray that raises `error` at the n-th frame (the disk fills up)."""
    real, calls = av.VideoFrame.from_ndarray, []

    def from_ndarray(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise error
        return real(*args, **kwargs)

    return from_ndarray


def _disk_full(*args, **kwargs):
    """A replacement for PIL's Image.save that writes a few bytes, then finds the disk full."""
    target = args[1] if len(args) > 1 else kwargs["fp"]
    with open(target, "wb") as f:
        f.write(b"GIF89a half an image")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_mp4_write_leaves_the_earlier_file_whole(tmp_path, monkeypatch, error):
    earlier = write_video(tmp_path / "out.mp4", _clip(t=3)).read_bytes()
    monkeypatch.setattr(av.VideoFrame, "from_ndarray", _fail_on_frame(5, error))
    with pytest.raises(type(error)):
        write_video(tmp_path / "out.mp4", _clip(t=9))
    assert os.listdir(tmp_path) == ["out.mp4"]  # no partial file, no temporary
    assert (tmp_path / "out.mp4").read_bytes() == earlier
    monkeypatch.setattr(av.VideoFrame, "from_ndarray", _fail_on_frame(5, error))
    with pytest.raises(type(error)):
        write_video(tmp_path / "new.mp4", _clip(t=9))
    assert os.listdir(tmp_path) == ["out.mp4"]  # a new target is not created at all


def test_a_failed_gif_or_png_write_leaves_the_earlier_files_whole(tmp_path, monkeypatch):
    gif = write_gif(tmp_path / "a.gif", _clip(t=2), fps=8).read_bytes()
    pngs = write_frames_png(tmp_path / "frames", _clip(t=2))
    before = [p.read_bytes() for p in pngs]
    monkeypatch.setattr(Image.Image, "save", _disk_full)
    for write in (lambda: write_gif(tmp_path / "a.gif", _clip(t=4)), lambda: write_frames_png(tmp_path / "frames",
                                                                                             _clip(t=4))):
        with pytest.raises(OSError, match="No space left"):
            write()
    assert sorted(os.listdir(tmp_path)) == ["a.gif", "frames"] and (tmp_path / "a.gif").read_bytes() == gif
    assert sorted(os.listdir(tmp_path / "frames")) == ["00000.png", "00001.png"]
    assert [p.read_bytes() for p in pngs] == before


def test_output_kinds_read_suffixes_in_any_case(tmp_path):
    assert [output_kind(tmp_path / n) for n in ("a.mp4", "A.MP4", "b.Gif", "frames")] == [
        "mp4", "mp4", "gif", "png frames"]
    assert output_kind(f"{tmp_path}/run.v2/") == "png frames" and output_kind(tmp_path) == "png frames"
    for name in ("a.avi", "a.png", "a.webm"):
        with pytest.raises(ValueError, match="unknown suffix .*use .mp4, .gif, or a name without a suffix"):
            output_kind(tmp_path / name)
    assert write_output(tmp_path / "OUT.MP4", _clip(t=3), fps=8) == "mp4"
    assert read_video(tmp_path / "OUT.MP4").shape == (3, 32, 48, 3) and (tmp_path / "OUT.MP4").is_file()
    for fps in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="fps must be positive and finite"):
            write_video(tmp_path / "x.mp4", _clip(t=1), fps=fps)
    assert not (tmp_path / "x.mp4").exists()
