"""Datasets: manifest and .txt captions, bad files (skipped, counted, reported), buckets, frames read."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hunyuan_video.data import Bucket, DataWarning, SkipReport, assign_bucket, parse_buckets, read_dataset
from hunyuan_video.data.dataset import VideoDataset, resize_crop
from hunyuan_video.video_io import write_video


def _counting(t: int, h: int = 32, w: int = 32) -> np.ndarray:
    """A clip whose frame i is flat grey 20 + 5 i: the loaded values tell which frames were read."""
    return np.broadcast_to((20 + 5 * np.arange(t, dtype=np.uint8))[:, None, None, None], (t, h, w, 3)).copy()


def _grey_level(video: torch.Tensor) -> np.ndarray:
    """Per frame of (3, T, H, W) in [-1, 1]: the source frame index it came from."""
    return ((video.mean((0, 2, 3)).numpy() + 1) * 127.5 - 20) / 5


def _write_manifest(root, rows):
    """metadata.jsonl from dicts (and raw strings, for broken lines)."""
    (root / "metadata.jsonl").write_text("".join((json.dumps(r) if isinstance(r, dict) else r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Source clips written once: 40, 9 and 5 frames, a wide one, a truncated one (its header says 40 frames, about
    half of them decode), a file that is no video at all, and an image."""
    root = tmp_path_factory.mktemp("clips")
    write_video(root / "long.mp4", _counting(40))
    write_video(root / "nine.mp4", _counting(9))
    write_video(root / "five.mp4", _counting(5))
    write_video(root / "wide.mp4", _counting(9, 32, 64))
    noise = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    data = write_video(root / "noise.mp4", noise).read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # cut mid-stream: 16 frames decode, then it ends
    (root / "broken.mp4").write_bytes(b"not a video " * 20)
    Image.fromarray(_counting(1, 24, 24)[0]).save(root / "still.png")
    return root


def _folder(tmp_path, clips, names):
    for name in names:
        shutil.copy(clips / name, tmp_path / name)
    return tmp_path


def test_manifest_reader_skips_and_reports_bad_rows(tmp_path, clips):
    _folder(tmp_path, clips, ["long.mp4", "nine.mp4", "broken.mp4", "still.png"])
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    _write_manifest(tmp_path, [
        {"file": "long.mp4", "caption": "a long clip", "objects": [{"colour": "red"}]},
        {"file": "nine.mp4", "caption": "nine frames", "fps": 24, "frames": 9, "height": 32, "width": 32},
        {"file": "still.png", "caption": "an image"},
        {"file": "broken.mp4", "caption": "no video"},
        {"file": "gone.mp4", "caption": "missing"},
        {"file": "long.mp4", "caption": "   "},
        {"file": "notes.pdf", "caption": "not media"},
        "{not json",
    ])
    with pytest.warns(DataWarning) as caught:
        samples, report = read_dataset(tmp_path)
    assert [(s.file.name, s.caption, s.frames, s.height, s.width, s.is_image) for s in samples] == [
        ("long.mp4", "a long clip", 40, 32, 32, False), ("nine.mp4", "nine frames", 9, 32, 32, False),
        ("still.png", "an image", 1, 24, 24, True)]
    assert samples[0].meta == {"objects": [{"colour": "red"}]} and samples[0].fps == pytest.approx(24)
    reasons = {f.split("/")[-1]: r.split(":")[0] for f, r in report.skipped}
    assert reasons == {"broken.mp4": "unreadable", "gone.mp4": "missing file", "long.mp4": "empty caption",
                       "notes.pdf": "unsupported type", "metadata.jsonl:8": "bad manifest line"}
    assert len(caught) == len(report) == 5 and "(5 skipped so far)" in str(caught[-1].message)
    assert report.summary().startswith("5 files skipped: ")
    report.save(tmp_path / "skipped.json")
    assert len(json.loads((tmp_path / "skipped.json").read_text())) == 5


def test_txt_captions_when_there_is_no_manifest(tmp_path, clips):
    (tmp_path / "sub").mkdir()
    _folder(tmp_path, clips, ["nine.mp4", "five.mp4", "long.mp4"])
    shutil.copy(clips / "still.png", tmp_path / "sub" / "still.png")
    (tmp_path / "nine.txt").write_text("nine frames\n")
    (tmp_path / "sub" / "still.txt").write_text("an image")
    (tmp_path / "five.txt").write_text("\n")  # empty caption; long.mp4 has no caption file
    with pytest.warns(DataWarning):
        samples, report = read_dataset(tmp_path)
    assert [(s.file.name, s.caption) for s in samples] == [("nine.mp4", "nine frames"), ("still.png", "an image")]
    assert sorted(r.split(":")[0] for _, r in report.skipped) == ["empty caption", "no caption"]
    with pytest.raises(ValueError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")


def test_parse_and_assign_buckets():
    assert parse_buckets("17x64x64, 1x64x64,17x64x64") == [Bucket(1, 64, 64), Bucket(17, 64, 64)]
    assert parse_buckets([[9, 32, 48]]) == [Bucket(9, 32, 48)] and str(Bucket(9, 32, 48)) == "9x32x48"
    for bad in ("17x64", "axbxc", "", "0x64x64"):
        with pytest.raises(ValueError, match="FRAMESxHEIGHTxWIDTH"):
            parse_buckets(bad)
    buckets = parse_buckets("33x64x64,17x64x64,17x64x112,17x32x32,1x64x64,1x64x112")
    assert assign_bucket(40, 480, 480, buckets, image=False) == Bucket(33, 64, 64)  # most frames that fit
    assert assign_bucket(20, 480, 480, buckets, image=False) == Bucket(17, 64, 64)  # then the larger area
    assert assign_bucket(40, 360, 640, buckets, image=False) == Bucket(17, 64, 112)  # nearest aspect first
    assert assign_bucket(9, 480, 480, buckets, image=False) is None  # too short for every video bucket
    assert assign_bucket(1, 720, 1280, buckets, image=True) == Bucket(1, 64, 112)


def test_resize_crop_keeps_the_centre():
    video = torch.zeros(3, 2, 20, 40)
    video[:, :, :, 10:30] = 1.0  # the middle half is white
    out = resize_crop(video, 10, 10)  # resized to 10 x 20, then the middle 10 columns
    assert out.shape == (3, 2, 10, 10) and out[..., 1:-1].min() > 0.99 and out.mean() > 0.95
    assert resize_crop(video, 10, 20).min() == 0.0  # the same size uncropped keeps the black sides
    assert resize_crop(torch.rand(3, 1, 8, 8), 16, 24).shape == (3, 1, 16, 24)  # small inputs are upscaled


def test_too_short_clips_are_skipped_and_images_fill_image_buckets(tmp_path, clips):
    _folder(tmp_path, clips, ["long.mp4", "five.mp4", "still.png"])
    _write_manifest(tmp_path, [{"file": n, "caption": n} for n in ("long.mp4", "five.mp4", "still.png")])
    with pytest.warns(DataWarning, match="too short: 5 frames, the shortest video bucket has 9"):
        ds = VideoDataset(tmp_path, parse_buckets("9x32x32,1x16x16"))
    assert {str(b): [ds.samples[i].file.name for i in g] for b, g in ds.groups.items()} == {
        "9x32x32": ["long.mp4"], "1x16x16": ["still.png"]}


def test_load_reads_the_frames_asked_for(tmp_path, clips):
    _folder(tmp_path, clips, ["long.mp4", "still.png"])
    _write_manifest(tmp_path, [{"file": n, "caption": n} for n in ("long.mp4", "still.png")])
    ds = VideoDataset(tmp_path, parse_buckets("5x16x16,1x16x16"))
    video = ds.load(0, Bucket(5, 16, 16), start=3, stride=7)
    assert video.shape == (3, 5, 16, 16)
    np.testing.assert_allclose(_grey_level(video), 3 + 7 * np.arange(5), atol=0.5)
    assert ds.load(1, Bucket(1, 16, 16)).shape == (3, 1, 16, 16)


def test_verify_reads_every_header_and_skips_what_cannot_fill_a_bucket(tmp_path, clips):
    _folder(tmp_path, clips, ["long.mp4", "cut.mp4", "nine.mp4", "broken.mp4"])
    rows = [{"file": "cut.mp4", "caption": "truncated"},  # its header is fine: only decoding finds it short
            {"file": "nine.mp4", "caption": "lies about its length", "frames": 40, "height": 32, "width": 32},
            {"file": "broken.mp4", "caption": "no video", "frames": 40, "height": 32, "width": 32},
            {"file": "long.mp4", "caption": "fine"}]
    _write_manifest(tmp_path, rows)
    ds = VideoDataset(tmp_path, parse_buckets("33x16x16"))  # the manifest is trusted: nothing skipped yet
    assert len(ds.groups[Bucket(33, 16, 16)]) == 4 and len(ds.report) == 0
    with pytest.raises(ValueError):
        ds.load(2, Bucket(33, 16, 16))  # broken.mp4
    with pytest.warns(DataWarning):  # verify=True reads every header: two of the three are caught before training
        verified = VideoDataset(tmp_path, parse_buckets("33x16x16"), verify=True)
    assert [verified.samples[i].file.name for i in verified.groups[Bucket(33, 16, 16)]] == ["cut.mp4", "long.mp4"]
    assert sorted(r.split(":")[0] for _, r in verified.report.skipped) == ["too short", "unreadable"]


def test_report_counts_each_file_once():
    report = SkipReport()
    with pytest.warns(DataWarning):
        report.add_all([("a.mp4", "decode failed: x"), ("a.mp4", "decode failed: x"), ("b.mp4", "too short: 3")])
    assert len(report) == 2 and report.summary().splitlines()[0] == "2 files skipped: 1 decode failed, 1 too short"


def test_check_command_decodes_everything(tmp_path, clips, capsys):
    from hunyuan_video.cli import main

    _folder(tmp_path, clips, ["long.mp4", "nine.mp4", "cut.mp4", "broken.mp4"])
    _write_manifest(tmp_path, [{"file": n, "caption": n} for n in ("long.mp4", "nine.mp4", "cut.mp4", "broken.mp4")])
    assert main(["data", "check", str(tmp_path), "--buckets", "9x16x16", "--out", str(tmp_path / "bad.json")]) == 0
    printed = capsys.readouterr().out
    # long and nine; cut.mp4 (truncated) is listed as skipped and so counted in no bucket
    assert "bucket 9x16x16: 2" in printed and "3 samples listed, 2 decode in full" in printed
    bad = {row["file"].split("/")[-1]: row["reason"] for row in json.loads((tmp_path / "bad.json").read_text())}
    assert bad.keys() == {"cut.mp4", "broken.mp4"}
    assert bad["cut.mp4"] == "truncated: 16 of 40 frames decode"
