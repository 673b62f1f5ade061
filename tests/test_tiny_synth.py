"""The synthetic world: determinism, held-out split, paths inside the frame, captions, files and CLI."""

import json
import re

import numpy as np
import pytest

from hunyuan_video.cli import main
from hunyuan_video.tiny.synth import (
    COLOURS,
    MOTIONS,
    SHAPES,
    SIZES,
    SynthConfig,
    caption_vocabulary,
    generate,
    held_out_combos,
    object_slots,
    render_clip,
    sample_clip,
    swap_motions,
    valid_combos,
)
from hunyuan_video.video_io import read_video, video_info


def test_deterministic_per_seed_and_index():
    a, b = sample_clip(5, seed=3), sample_clip(5, seed=3)
    assert a == b
    np.testing.assert_array_equal(render_clip(a), render_clip(b))
    assert [sample_clip(i, seed=3).caption for i in range(6)] != [sample_clip(i, seed=4).caption for i in range(6)]
    assert held_out_combos(3) == held_out_combos(3) != held_out_combos(4)


def test_held_out_never_in_train_but_all_attributes_and_pairs_are():
    held = held_out_combos(0)
    combos = valid_combos()
    assert held < set(combos) and 0.05 < len(held) / len(combos) < 0.2
    train_objects = [o for i in range(400) for o in sample_clip(i, 0, "train").objects]
    seen = {(o.colour, o.shape, o.motion) for o in train_objects}
    assert not seen & held
    assert {o.colour for o in train_objects} == set(COLOURS) and {o.motion for o in train_objects} == set(MOTIONS)
    train = set(combos) - held
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert {(c[i], c[j]) for c in held} <= {(c[i], c[j]) for c in train}
    test_main = {(c.objects[0].colour, c.objects[0].shape, c.objects[0].motion)
                 for c in (sample_clip(i, 0, "test") for i in range(60))}
    assert test_main <= held and len(test_main) > 20


def test_paths_stay_inside_and_match_motion():
    cfg = SynthConfig(height=48, width=80, frames=9)
    for i in range(150):
        clip = sample_clip(i, seed=1, config=cfg)
        for o in clip.objects:
            x, y, s = np.array(o.x), np.array(o.y), np.array(o.scale)
            r = SIZES[o.size] * 48 * s
            assert (x - r >= 0).all() and (x + r <= 80).all() and (y - r >= 0).all() and (y + r <= 48).all()
            dx, dy = x[-1] - x[0], y[-1] - y[0]
            if o.motion == "left":
                assert dx < -5 and abs(dy) < 1e-6
            if o.motion == "down_right":
                assert dx > 3 and dy > 3
            if o.motion == "grow":
                assert s[-1] > 2 * s[0]
            if o.motion in ("still", "rotate", "bounce"):
                assert dx == 0 and abs(dy) < 1e-6
            assert not (o.shape == "circle" and o.motion == "rotate")
        if len(clip.objects) == 2:
            assert clip.objects[0].colour != clip.objects[1].colour


def test_captions_use_the_vocabulary_and_name_the_attributes():
    vocab = set(caption_vocabulary())
    assert {"red", "circle", "left", "background", "gradient", "slowly"} <= vocab
    for i in range(200):
        clip = sample_clip(i, seed=2)
        words = clip.caption.split()
        assert set(words) <= vocab, clip.caption
        for o in clip.objects:
            assert re.search(rf"\ba {o.size} {o.colour} {o.shape}\b", clip.caption), clip.caption
        assert clip.background in clip.caption and (("gradient" in words) == clip.gradient)


def test_object_slots_and_swapped_motions():
    caption = "on a dark blue background a small red circle moves up and to the left and a large cyan star grows"
    assert object_slots(caption) == [0, 0, 0, 0, 0] + [1] * 10 + [0] + [2] * 5
    assert swap_motions(caption) == ("on a dark blue background a small red circle grows and a large cyan star "
                                     "moves up and to the left")
    for i in range(200):
        clip = sample_clip(i, seed=2)
        words, slots = clip.caption.split(), object_slots(clip.caption)
        assert max(slots) == len(clip.objects)
        for k, o in enumerate(clip.objects, 1):
            assert [w for w, s in zip(words, slots) if s == k][:4] == ["a", o.size, o.colour, o.shape]
        if len(clip.objects) == 2:
            assert swap_motions(swap_motions(clip.caption)) == clip.caption
    with pytest.raises(ValueError, match="does not name two objects"):
        swap_motions("a small red circle grows on a black background")


def test_rendered_object_has_its_colour_where_the_path_says():
    cfg = SynthConfig()
    clip = next(c for c in (sample_clip(i, 0, config=cfg) for i in range(50))
                if len(c.objects) == 1 and c.objects[0].shape in ("circle", "square"))
    frames = render_clip(clip, cfg)
    assert frames.shape == (17, 64, 64, 3) and frames.dtype == np.uint8
    o = clip.objects[0]
    for t in (0, 8, 16):
        pixel = frames[t, round(o.y[t]), round(o.x[t])]
        np.testing.assert_allclose(pixel, COLOURS[o.colour], atol=2)


def test_cli_writes_mp4s_and_manifest(tmp_path):
    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), "--clips", "3", "--seed", "7", "--size", "32", "48", "--frames", "9",
                 "--fps", "12", "--split", "test"]) == 0
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    world = json.loads((out / "world.json").read_text())
    assert world["seed"] == 7 and {tuple(c) for c in world["held_out"]} == held_out_combos(7)
    for i, row in enumerate(rows):
        assert row["caption"] == sample_clip(i, 7, "test", SynthConfig(32, 48, 9, 12)).caption
        assert (row["frames"], row["height"], row["width"], row["fps"]) == (9, 32, 48, 12)
        assert len(row["objects"][0]["x"]) == 9 and row["objects"][0]["shape"] in SHAPES
        info = video_info(out / row["file"])
        assert (info.frames, info.height, info.width) == (9, 32, 48) and info.fps == pytest.approx(12)
    assert read_video(out / rows[0]["file"]).shape == (9, 32, 48, 3)
    again = tmp_path / "again"  # the same seed writes the same manifest and the same clips
    generate(again, 3, seed=7, split="test", config=SynthConfig(32, 48, 9, 12), progress=False)
    for name in ["metadata.jsonl", "world.json"]:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    for row in rows:  # H.264 through PyAV is not bit-exact: 600 writes of one clip gave 3 files, 2 levels apart
        np.testing.assert_allclose(read_video(again / row["file"]), read_video(out / row["file"]), atol=4)
    with pytest.raises(SystemExit, match="already holds another split"):
        main(["data", "synth", str(out), "--clips", "1", "--split", "train"])
    with pytest.raises(SystemExit, match="even"):
        main(["data", "synth", str(out), "--clips", "1", "--size", "15"])


def test_two_object_prob_adds_second_objects_and_keeps_the_first(tmp_path):
    clips = {p: [sample_clip(i, 0, "train", SynthConfig(two_object_prob=p)) for i in range(60)] for p in (0, 0.25, 1)}
    counts = {p: sum(len(c.objects) == 2 for c in cs) for p, cs in clips.items()}
    assert counts[0] == 0 and 5 <= counts[0.25] <= 25 and counts[1] >= 50  # one that fits is not always found
    for a, b in zip(clips[0], clips[1]):  # the main object is drawn first, whatever the chance of a second
        assert a.objects[0] == b.objects[0]
    out = tmp_path / "two"
    assert main(["data", "synth", str(out), "--clips", "2", "--size", "32", "--frames", "5",
                 "--two-object-prob", "1"]) == 0
    assert json.loads((out / "world.json").read_text())["config"]["two_object_prob"] == 1
    with pytest.raises(SystemExit, match="two_object_prob"):
        main(["data", "synth", str(tmp_path / "bad"), "--clips", "1", "--two-object-prob", "1.5"])


def test_first_extends_a_dataset_with_the_clips_it_does_not_hold(tmp_path):
    cfg = SynthConfig(32, 32, 5)
    generate(tmp_path / "whole", 5, seed=3, config=cfg, progress=False)
    assert main(["data", "synth", str(tmp_path / "tail"), "--clips", "2", "--first", "3", "--seed", "3",
                 "--size", "32", "--frames", "5"]) == 0
    whole = (tmp_path / "whole" / "metadata.jsonl").read_text().splitlines()
    tail = (tmp_path / "tail" / "metadata.jsonl").read_text().splitlines()
    assert tail == whole[3:]  # the same clips, under the same file names
    assert [json.loads(r)["file"] for r in tail] == ["train_000003.mp4", "train_000004.mp4"]
    assert json.loads((tmp_path / "tail" / "world.json").read_text())["first"] == 3
    with pytest.raises(SystemExit, match="first must be >= 0"):
        main(["data", "synth", str(tmp_path / "bad"), "--clips", "1", "--first", "-1"])
