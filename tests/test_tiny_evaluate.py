"""The evaluator: ~100% on the world's own clips (clean, through H.264, blurred and noisy), and it can fail."""

import json

import numpy as np
import pytest

from hunyuan_video.cli import main
from hunyuan_video.tiny.evaluate import (
    NEW_CONCEPT_PALETTE,
    background_name,
    detect,
    evaluate_folder,
    parse_caption,
    score,
    summarize,
)
from hunyuan_video.tiny.synth import MOTIONS, SHAPES, SynthConfig, caption_vocabulary, render_clip, sample_clip
from hunyuan_video.video_io import read_video, write_video


def _clips_covering_every_motion(split: str, per_motion: int = 2, seed: int = 0):
    """The first clips of a split until every motion has been the main object's `per_motion` times."""
    counts, clips = dict.fromkeys(MOTIONS, 0), []
    for i in range(2000):
        clip = sample_clip(i, seed, split)
        m = clip.objects[0].motion
        if counts[m] < per_motion:
            counts[m] += 1
            clips.append(clip)
        if min(counts.values()) >= per_motion:
            return clips
    raise AssertionError(f"motions missing from the first clips: {counts}")


def _degrade(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a small generator's output looks like: blurred (binomial 5x5, sigma ~1 px) and noisy (sigma 12)."""
    k = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16
    x = frames.astype(np.float32)
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (2, 2)
        p = np.pad(x, pad, mode="edge")
        x = sum(k[i] * np.take(p, range(i, i + x.shape[axis]), axis=axis) for i in range(5))
    return (x + rng.normal(0, 12, x.shape)).round().clip(0, 255).astype(np.uint8)


def _objects(clip):
    return [vars(o) for o in clip.objects]


def test_perfect_on_clean_clips_through_h264(tmp_path):
    results = []
    for clip in _clips_covering_every_motion("train"):
        frames = read_video(write_video(tmp_path / "c.mp4", render_clip(clip)))
        results.append(score(frames, _objects(clip)))
    summary = summarize(results)
    assert summary["colour_accuracy"] == 1.0 and summary["motion_accuracy"] == 1.0, summary["motion_confusion"]
    assert summary["speed_accuracy"] == 1.0


def test_near_perfect_on_blurred_noisy_held_out_clips():
    rng = np.random.default_rng(0)
    results = [score(_degrade(render_clip(c), rng), _objects(c)) for c in _clips_covering_every_motion("test", seed=1)]
    summary = summarize(results)
    assert summary["colour_accuracy"] == 1.0
    assert summary["motion_accuracy"] >= 0.95, summary["motion_confusion"]


def test_background_names_dark_light_and_gradient_backgrounds_through_blur_and_noise():
    rng, config = np.random.default_rng(0), SynthConfig(light_prob=0.5)
    clips = [sample_clip(i, 0, "test", config) for i in range(40)]
    assert {c.gradient for c in clips} == {True, False} and len({c.background for c in clips}) == 7  # every kind
    assert [background_name(_degrade(render_clip(c, config), rng)) for c in clips] == [c.background for c in clips]
    uniform = np.full((3, 16, 16, 3), 245, np.uint8)
    assert background_name(uniform) == "white" and background_name(uniform // 20) == "black"


def test_robust_to_faded_colours_and_border_artefacts():
    results = []
    for clip in _clips_covering_every_motion("train", per_motion=1, seed=2):
        x = render_clip(clip).astype(np.float32)
        x = 0.75 * x + 0.25 * x[:, :, :3].mean((0, 1, 2)) + 10  # washed out towards the background, brighter
        x[:, :, 0], x[:, :, -1], x[:, 0] = 0, 255, 0  # a decoder's black and white lines at the borders
        results.append(score(x.clip(0, 255).astype(np.uint8), _objects(clip)))
    summary = summarize(results)
    assert summary["colour_accuracy"] == 1.0 and summary["motion_accuracy"] == 1.0, summary["motion_confusion"]


def test_wrong_captions_score_wrong():
    clip = next(c for c in (sample_clip(i, 0) for i in range(200))
                if len(c.objects) == 1 and c.objects[0].motion == "left")
    frames = render_clip(clip)
    truth = _objects(clip)[0]
    assert score(frames, [truth])["motion_ok"] and score(frames, [truth])["colour_ok"]
    other_colour = "blue" if truth["colour"] != "blue" else "red"
    assert not score(frames, [{**truth, "colour": other_colour}])["colour_ok"]
    assert not score(frames, [{**truth, "motion": "right"}])["motion_ok"]
    assert score(frames, [{**truth, "speed": "slow" if truth["speed"] == "fast" else "fast"}])["speed_ok"] is False
    # a reversed video moves the other way; a frozen one stands still
    assert detect(frames[::-1]).motion == "right"
    assert detect(np.repeat(frames[:1], len(frames), 0)).motion == "still"


def test_moving_in_a_circle_reads_as_orbit_and_nothing_else_does():
    """The new-concept world's "moves in a circle": right on clean and degraded clips; half the circle, or the
    default world's bounces and straight tracks, are not an orbit."""
    rng = np.random.default_rng(3)
    orbits = [c for c in (sample_clip(i, 0, "train", new_concepts=True) for i in range(120))
              if c.objects[0].motion == "orbit"][:12]
    assert len(orbits) == 12
    for clip in orbits:
        frames = render_clip(clip)
        assert score(frames, _objects(clip), NEW_CONCEPT_PALETTE)["motion_ok"], clip.caption
        assert detect(frames[: len(frames) // 2]).motion != "orbit"  # half a turn
    degraded = [score(_degrade(render_clip(c), rng), _objects(c), NEW_CONCEPT_PALETTE)["motion_ok"] for c in orbits]
    assert np.mean(degraded) >= 0.9
    others = _clips_covering_every_motion("train", per_motion=3, seed=4)
    assert all(detect(_degrade(render_clip(c), rng)).motion != "orbit" for c in others)
    assert parse_caption("a small red square moves in a circle on a black background")[0]["motion"] == "orbit"


def test_two_objects_track_the_named_colour():
    clip = next(c for c in (sample_clip(i, 0) for i in range(300))
                if len(c.objects) == 2 and c.objects[0].motion != c.objects[1].motion)
    frames = render_clip(clip)
    first, second = _objects(clip)
    assert score(frames, [first, second])["motion_ok"]
    assert score(frames, [second, first])["motion_ok"]
    assert set(detect(frames, 2, first["colour"]).colours[:2]) == {first["colour"], second["colour"]}


def test_shapes_read_right_including_the_new_heart():
    """Every shape (the heart too) at every size and rotation: all right on clean clips, nearly all when degraded;
    a caption naming the wrong shape fails."""
    rng = np.random.default_rng(1)
    clips = [sample_clip(i, 0, "train") for i in range(20)] + [sample_clip(i, 0, "test", new_concepts=True)
                                                                for i in range(20)]
    assert {c.objects[0].shape for c in clips} == {*SHAPES, "heart"}
    clean, degraded = [], []
    for clip in clips:
        frames, objects = render_clip(clip), _objects(clip)
        clean.append(score(frames, objects, NEW_CONCEPT_PALETTE)["shape_ok"])
        degraded.append(score(_degrade(frames, rng), objects, NEW_CONCEPT_PALETTE)["shape_ok"])
    assert all(clean) and np.mean(degraded) >= 0.9
    heart = next(c for c in clips if c.objects[0].shape == "heart" and c.objects[0].size != "small")
    wrong = [{**_objects(heart)[0], "shape": "square"}, *_objects(heart)[1:]]
    assert score(render_clip(heart), wrong, NEW_CONCEPT_PALETTE)["detected_shape"] == "heart"
    assert not score(render_clip(heart), wrong, NEW_CONCEPT_PALETTE)["shape_ok"]
    results = [score(render_clip(c), _objects(c), NEW_CONCEPT_PALETTE) for c in clips[:4]]
    assert summarize(results)["shape_accuracy"] == 1.0


def test_empty_video_finds_nothing():
    frames = np.full((9, 32, 32, 3), 40, dtype=np.uint8)
    det = detect(frames)
    assert det.motion is None and det.shape is None and det.colours == []
    assert not score(frames, [{"colour": "red", "motion": "still"}])["motion_ok"]
    with pytest.raises(ValueError, match="uint8"):
        detect(frames.astype(np.float32))
    with pytest.raises(ValueError, match="unknown colour"):
        detect(frames, 2, "mauve")


def test_parse_caption_recovers_every_attribute():
    for i in range(300):
        clip = sample_clip(i, 3)
        parsed = parse_caption(clip.caption)
        assert [(p["size"], p["colour"], p["shape"], p["motion"], p["speed"]) for p in parsed] == [
            (o.size, o.colour, o.shape, o.motion, o.speed) for o in clip.objects
        ], clip.caption
    with pytest.raises(ValueError, match="no object"):
        parse_caption("a dog runs in the park")
    assert set(caption_vocabulary()) >= {w for i in range(50) for w in sample_clip(i, 3).caption.split()}


def test_evaluate_folder_and_cli(tmp_path):
    cfg = SynthConfig(frames=9)
    rows = []
    for i in range(3):
        clip = sample_clip(i, 0, "test", cfg)
        write_video(tmp_path / f"{i}.mp4", render_clip(clip, cfg))
        rows.append({"file": f"{i}.mp4", "caption": clip.caption})  # caption only: attributes are parsed
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = evaluate_folder(tmp_path)
    assert report["n"] == 3 and report["colour_accuracy"] == 1.0 and report["motion_accuracy"] == 1.0
    assert report["background_accuracy"] is None and "background_ok" not in report["clips"][0]
    named = [{**row, "background": clip_background} for row, clip_background in
             zip(rows, ["white", *(sample_clip(i, 0, "test", cfg).background for i in (1, 2))])]
    (tmp_path / "named.jsonl").write_text("".join(json.dumps(r) + "\n" for r in named))
    report = evaluate_folder(tmp_path, tmp_path / "named.jsonl")
    assert [c["background_ok"] for c in report["clips"]] == [False, True, True]  # clip 0 is not on white
    assert report["background_accuracy"] == pytest.approx(2 / 3)
    out = tmp_path / "eval.json"
    assert main(["data", "eval", str(tmp_path), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["motion_accuracy"] == 1.0


def test_eval_command_names_a_missing_folder_or_manifest(tmp_path):
    from hunyuan_video.cli import main

    with pytest.raises(SystemExit, match=f"videos folder {tmp_path / 'none'} does not exist"):
        main(["data", "eval", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="no manifest at .*metadata.jsonl: pass --manifest"):
        main(["data", "eval", str(tmp_path)])
    assert not (tmp_path / "eval.json").exists()
