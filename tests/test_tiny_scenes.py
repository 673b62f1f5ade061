"""Light backgrounds and the scenes outside the world's templates (the VAE's wider training data)."""

import json

import numpy as np

from hunyuan_video.cli import main
from hunyuan_video.data.manifest import read_dataset
from hunyuan_video.tiny.evaluate import score, summarize
from hunyuan_video.tiny.scenes import KINDS, TEST_PHOTOS, TRAIN_PHOTOS, render_scene
from hunyuan_video.tiny.synth import (
    COLOURS,
    LIGHT_BACKGROUNDS,
    MIN_CONTRAST,
    SynthConfig,
    light_background_words,
    render_clip,
    sample_clip,
)
from hunyuan_video.video_io import read_video, write_video


def test_light_backgrounds_keep_the_clip_and_contrast():
    light = SynthConfig(light_prob=1.0)
    moved = 0
    for i in range(60):
        plain, lit = sample_clip(i, 0), sample_clip(i, 0, config=light)
        assert lit.objects == plain.objects  # the objects, their paths and the rest of the clip stay
        if lit.background in LIGHT_BACKGROUNDS:
            moved += 1
            assert not lit.gradient and f"{lit.background} background" in lit.caption
            for o in lit.objects:
                gap = np.linalg.norm(np.subtract(COLOURS[o.colour], LIGHT_BACKGROUNDS[lit.background]))
                assert gap >= MIN_CONTRAST
            corner = render_clip(lit, SynthConfig(frames=5))[0, 0, 0]
            np.testing.assert_array_equal(corner, LIGHT_BACKGROUNDS[lit.background])
        else:  # only a white object finds no light background far enough from it
            assert any(o.colour == "white" for o in lit.objects)
    assert moved >= 45
    assert light_background_words() == ["light"]


def test_evaluator_reads_light_background_clips(tmp_path):
    cfg = SynthConfig(light_prob=1.0)
    clips = [c for c in (sample_clip(i, 2, "test", cfg) for i in range(40)) if c.background in LIGHT_BACKGROUNDS]
    results = [score(read_video(write_video(tmp_path / "c.mp4", render_clip(c, cfg))), [vars(o) for o in c.objects])
               for c in clips[:24]]
    summary = summarize(results)
    assert summary["colour_accuracy"] == 1.0
    assert summary["motion_accuracy"] >= 0.95, summary["motion_confusion"]


def test_scenes_are_deterministic_and_keep_test_photos_apart():
    cfg = SynthConfig(frames=9)
    a, about = render_scene(3, 0, "train", cfg)
    b, _ = render_scene(3, 0, "train", cfg)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (9, 64, 64, 3) and a.dtype == np.uint8
    seen = {split: [render_scene(i, 0, split, cfg)[1] for i in range(40)] for split in ("train", "test")}
    assert {s["kind"] for s in seen["train"]} == set(KINDS)
    for split, photos in (("train", TRAIN_PHOTOS), ("test", TEST_PHOTOS)):
        used = {s["photo"] for s in seen[split] if s["kind"] == "photo"}
        assert used and used <= set(photos)
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    colours = [tuple(o["fill"]) for s in seen["train"] for o in s["objects"]]
    assert len(colours) > 10 and not set(colours) <= set(COLOURS.values())  # any hue, not the world's eight


def test_photo_scenes_pan_and_zoom():
    cfg = SynthConfig(frames=9)
    photo = next(f for f, s in (render_scene(i, 0, "train", cfg) for i in range(40))
                 if s["kind"] == "photo" and not s["objects"])
    assert np.abs(photo[0].astype(int) - photo[-1].astype(int)).mean() > 5  # the view moves
    assert photo[0].std() > 10  # a picture, not a flat colour


def test_synth_with_scenes_writes_a_vae_dataset(tmp_path, capsys):
    out = tmp_path / "mixed"
    assert main(["data", "synth", str(out), "--clips", "12", "--frames", "9", "--light-prob", "0.5",
                 "--scenes", "0.5"]) == 0
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in rows]
    assert "world" in kinds and set(kinds) - {"world"} and len(rows) == 12
    samples, report = read_dataset(out)
    assert len(samples) == 12 and not report.skipped
    world = [r for r in rows if r["kind"] == "world"]
    assert all(r["caption"] == sample_clip(int(r["file"][6:12]), 0, config=SynthConfig(frames=9, light_prob=0.5))
               .caption for r in world)
