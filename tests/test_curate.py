"""`data curate` on the synthetic world's raw footage (hunyuan_video.tiny.raw): shot boundaries, camera labels,
duplicates, letterbox crops, the blur and static filters, a video corrupt half-way, an unreadable file, caching
(a run again does no work twice; a failure loses no finished work), tiers, and a dataset that trains."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hunyuan_video.curate import CurateConfig, curate
from hunyuan_video.curate.probe import file_hash
from hunyuan_video.tiny.raw import write_raw_footage

TIERS = [{"name": "base", "buckets": "9x32x32"}, {"name": "sharp", "min_sharpness": 120.0, "min_seconds": 2.0}]


def config(**changes) -> CurateConfig:
    return CurateConfig(tiers=TIERS, **changes)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    truths = write_raw_footage(root / "raw")
    result = curate(root / "raw", root / "out", config(), progress=False)
    table = pq.read_table(root / "out" / "clips.parquet").to_pylist()
    return root, truths, result, table


def _shot_of(truth: dict, clip: dict) -> dict:
    middle = (clip["start"] + clip["end"]) / 2
    return next(s for s in truth["shots"] if s["start"] <= middle < s["end"])


def _analysis(out: Path, raw: Path, name: str) -> dict:
    entry = next((out / ".curate" / "analysis").glob(f"{file_hash(raw / name)[:32]}-*.json"))
    return json.loads(entry.read_text())


def test_shot_boundaries_are_found_within_one_frame(run):
    root, truths, _, _ = run
    hits = found_total = truth_total = 0
    for name, truth in truths.items():
        if not truth["shots"]:
            continue
        analysis = _analysis(root / "out", root / "raw", name)
        found = analysis["cuts"]
        true = [s["start"] for s in truth["shots"][1:] if s["start"] < analysis["frames"]]
        hits += sum(any(abs(f - t) <= 1 for f in found) for t in true)
        found_total, truth_total = found_total + len(found), truth_total + len(true)
    precision, recall = hits / found_total, hits / truth_total
    assert truth_total >= 12 and 2 * precision * recall / (precision + recall) >= 0.95, (precision, recall)


def test_camera_movement_is_labelled(run):
    _, truths, _, table = run
    right = [r["camera"] == ("static" if _shot_of(truths[r["source"]], r)["spoil"] == "static"
                             else _shot_of(truths[r["source"]], r)["camera"]) for r in table]
    assert len(right) >= 15 and sum(right) / len(right) >= 0.9, [(r["source"], r["start"], r["camera"]) for r in table]
    assert {r["camera"] for r in table} >= {"pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out",
                                            "handheld", "static"}


def test_every_planted_duplicate_is_removed_and_no_distinct_clip(run):
    _, truths, _, table = run
    copies = {"short_c.mp4", "copy_c.mp4", "reencoded_c.mp4"}  # the same two shots, three times
    for r in table:
        if r["source"] not in copies:
            assert not any(reason.startswith("duplicate:") for reason in r["reasons"]), (r["source"], r["reasons"])
    for shot in (0, 1):
        versions = [r for r in table if r["source"] in copies and r["shot"] == shot]
        assert len(versions) == 3 and sum(r["kept"] for r in versions) == 1
        assert all(r["reason"] == "duplicate" for r in versions if not r["kept"])
        assert next(r for r in versions if r["kept"])["source"] != "reencoded_c.mp4"  # the sharper copy is kept
        exact = [r for r in versions if r["source"] != "reencoded_c.mp4" and not r["kept"]]
        assert len(exact) == 1 and "the same file as" in exact[0]["reasons"][0]


def test_letterbox_crops_within_two_pixels(run):
    _, truths, _, table = run
    boxed = 0
    for r in table:
        truth = _shot_of(truths[r["source"]], r)["letterbox"]
        assert np.abs(np.subtract(r["crop"], truth)).max() <= 2, (r["source"], r["crop"], truth)
        boxed += any(truth)
    assert boxed == 2
    manifest = [json.loads(line) for line in (run[0] / "out" / "metadata.jsonl").read_text().splitlines()]
    from hunyuan_video.video_io import video_info

    for row in manifest:  # the written clips are the cropped pictures
        info = video_info(run[0] / "out" / row["file"])
        assert (info.height, info.width, info.frames) == (row["height"], row["width"], row["frames"])
    assert {(row["height"], row["width"]) for row in manifest} >= {(72, 128), (96, 96), (96, 128)}


def test_blurry_and_static_shots_are_rejected_by_their_filters(run):
    _, truths, _, table = run
    spoiled = [(r, _shot_of(truths[r["source"]], r)["spoil"]) for r in table]
    assert {spoil for _, spoil in spoiled} == {"", "blurry", "static"}
    for r, spoil in spoiled:
        if spoil:
            assert not r["kept"] and r["reason"] == spoil, (r["source"], r["reasons"])
        elif r["reason"] != "duplicate":
            assert r["kept"], (r["source"], r["start"], r["reasons"])


def test_a_corrupt_video_keeps_its_readable_shots_and_bad_files_are_reported(run):
    root, _, result, table = run
    problems = {p["file"]: p for p in result.report["problems"]}
    assert problems["broken.mp4"]["status"] == "partial" and "frames decode" in problems["broken.mp4"]["reason"]
    assert problems["garbage.mp4"]["status"] == "unreadable"
    broken = [r for r in table if r["source"] == "broken.mp4"]
    assert len(broken) == 2 and all(r["kept"] for r in broken)
    report = json.loads((root / "out" / "report.json").read_text())
    assert report["videos"] == {"in": 7, "ok": 5, "partial": 1, "unreadable": 1, "failed": 0}
    assert report["clips"]["rejected"] == {"blurry": 1, "duplicate": 4, "static": 1}
    assert report["clips"]["kept"] == sum(r["kept"] for r in table) == 12
    for name in ("histograms.png", "contact_sheet.png"):
        assert (root / "out" / "report" / name).stat().st_size > 1000


def test_tiers_are_nested_and_bucketed(run):
    root, _, _, table = run
    tiers = {name: [json.loads(line) for line in (root / "out" / "tiers" / name / "metadata.jsonl").read_text()
                    .splitlines()] for name in ("base", "sharp")}
    assert len(tiers["base"]) == 12 and all(row["bucket"] == "9x32x32" for row in tiers["base"])
    sharp = {row["file"] for row in tiers["sharp"]}
    assert 0 < len(sharp) < 12 and sharp <= {row["file"] for row in tiers["base"]}
    assert all(row["sharpness"] >= 120 and row["seconds"] >= 2 for row in tiers["sharp"])
    from hunyuan_video.data import parse_buckets
    from hunyuan_video.data.dataset import VideoDataset

    dataset = VideoDataset(root / "out" / "tiers" / "sharp", parse_buckets("9x32x32"))
    assert len(dataset) == len(sharp) and not len(dataset.report)
    assert dataset.load(0, parse_buckets("9x32x32")[0]).shape == (3, 9, 32, 32)


def test_a_second_run_does_no_work_twice(run, capsys):
    root, _, _, _ = run
    out = root / "out"
    before = {p: p.stat().st_mtime_ns for p in (out / "clips").iterdir()}
    manifest = (out / "metadata.jsonl").read_text()
    again = curate(root / "raw", out, config(), progress=False)
    assert (again.analyzed, again.analysis_cached, again.exported, again.kept) == (0, 7, 0, 12)
    from hunyuan_video.cli import main

    (root / "tiers.json").write_text(json.dumps({"tiers": TIERS}))
    assert main(["data", "curate", str(root / "raw"), str(out), "--config", str(root / "tiers.json"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "7 videos (0 analysed, 7 cached), 18 clips found, 12 kept (0 written)" in printed
    assert "broken.mp4: partial: truncated" in printed and "garbage.mp4: unreadable" in printed
    assert {p: p.stat().st_mtime_ns for p in (out / "clips").iterdir()} == before
    assert (out / "metadata.jsonl").read_text() == manifest


def test_a_failing_file_loses_no_finished_work(run, tmp_path, monkeypatch):
    root, _, _, _ = run
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    for entry in (out / ".curate" / "analysis").glob(f"{file_hash(root / 'raw' / 'long_b.mp4')[:32]}-*.json"):
        entry.unlink()
    import hunyuan_video.curate.analyze as analyze

    real = analyze.analyze_video

    def crashing(path, *args, **kwargs):
        if Path(path).name == "long_b.mp4":
            raise RuntimeError("a stage crashed")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(analyze, "analyze_video", crashing)
    failed = curate(root / "raw", out, config(), progress=False)
    assert failed.analyzed == 1 and failed.report["videos"]["failed"] == 1
    assert "a stage crashed" in {p["file"]: p["reason"] for p in failed.report["problems"]}["long_b.mp4"]
    monkeypatch.setattr(analyze, "analyze_video", real)
    fixed = curate(root / "raw", out, config(), progress=False)
    assert (fixed.analyzed, fixed.analysis_cached, fixed.exported) == (1, 6, 0)
    assert (out / "metadata.jsonl").read_text() == (root / "out" / "metadata.jsonl").read_text()


def test_the_curated_folder_trains_the_transformer_and_the_vae(run, tmp_path):
    from test_cache import make_setup

    from hunyuan_video.train.cache import build_cache
    from hunyuan_video.train.dit import DiTTrainConfig, train

    fields = make_setup(tmp_path, clips=1)
    fields["data"] = str(run[0] / "out" / "tiers" / "base")
    fields["stages"] = [{"name": "video", "steps": 2, "batch_size": 2, "buckets": [[9, 32, 32]]}]
    cfg = DiTTrainConfig(**fields, log_every=1, checkpoint_every=1000)
    build_cache(cfg, progress=False)
    train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(row["loss"]) for row in log)

    from test_train_vae import TINY_VAE

    from hunyuan_video.train.vae import VAEStage, VAETrainConfig, train_vae

    vae_config = VAETrainConfig(train_dir=str(run[0] / "out"), out_dir=str(tmp_path / "vae_run"), vae=TINY_VAE,
                                stages=[VAEStage(steps=2, size=16, frames=5, batch_size=2)], lpips_weight=0.0,
                                disc_start=100, log_every=1, checkpoint_every=100)
    train_vae(vae_config, progress=False)
    log = [json.loads(line) for line in (tmp_path / "vae_run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(row["loss"]) for row in log)


def test_learned_scorers_and_the_embedder_filter_and_balance(run, tmp_path):
    import torch

    class Brightness(torch.nn.Module):  # a stand-in for an aesthetic model: a score per frame
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3)) * 10

    class MeanColour(torch.nn.Module):  # a stand-in for a vision embedder: one vector per frame
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)) - 0.5

    torch.jit.script(Brightness()).save(str(tmp_path / "bright.pt"))
    torch.jit.script(MeanColour()).save(str(tmp_path / "embed.pt"))
    root, _, _, table = run
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    least = float(np.median([r["brightness"] for r in table if r["kept"]])) / 255 * 10
    scorers = [{"name": "bright", "path": str(tmp_path / "bright.pt"), "size": 32, "min": least}]
    result = curate(root / "raw", out, config(scorers=scorers), progress=False)
    rows = pq.read_table(out / "clips.parquet").to_pylist()
    scored = [r for r in rows if json.loads(r["scores"])]
    assert len(scored) == 12 and result.analyzed == 0 and 0 < result.kept < 12
    for r in scored:
        assert r["kept"] == (json.loads(r["scores"])["bright"] >= least), r
        assert r["kept"] or r["reason"] == "bright"
    cached = {p: p.stat().st_mtime_ns for p in (out / ".curate" / "models").rglob("*.npy")}
    assert len(cached) == 12
    assert curate(root / "raw", out, config(scorers=scorers), progress=False).kept == result.kept
    assert {p: p.stat().st_mtime_ns for p in (out / ".curate" / "models").rglob("*.npy")} == cached  # not rescored
    embedder = {"path": str(tmp_path / "embed.pt"), "size": 16, "clusters": 3, "per_cluster": 2}
    balanced = curate(root / "raw", out, config(embedder=embedder), progress=False)
    rows = pq.read_table(out / "clips.parquet").to_pylist()
    assert balanced.kept == 6 and sum(r["reason"] == "concept" for r in rows) == 6
    with pytest.raises(ValueError, match="local paths only"):
        curate(root / "raw", tmp_path / "new", config(scorers=[{"name": "x", "path": str(tmp_path / "none.pt")}]),
               progress=False)
    assert not (tmp_path / "new").exists()


def _tiny_vlm(path: Path) -> Path:
    """A random LLaVA (a CLIP vision tower on a Llama) with a word tokenizer and a chat template, saved at `path`."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from hunyuan_video.curate.caption import PROMPT
    from hunyuan_video.text_encoder import build_word_tokenizer

    tok = build_word_tokenizer([PROMPT, 'a red square { } " :'], "llm")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    template = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}"
                "{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}")
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16, projection_dim=16)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-1,
                                              image_token_index=tok.convert_tokens_to_ids("<image>"))).save_pretrained(
        path)
    LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                      crop_size={"height": 32, "width": 32}),
                   tokenizer=tok, patch_size=16, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1, chat_template=template).save_pretrained(path)
    return path


def test_captions_come_from_a_local_vlm_with_the_camera_merged_and_caption_files_are_kept(run, tmp_path):
    from hunyuan_video.curate.caption import compose, parse_fields

    answer = 'Sure: {"short": "a red square", "background": "grass", "lighting": "soft", "other": 1} done'
    assert parse_fields(answer) == {"short": "a red square", "background": "grass", "lighting": "soft"}
    assert parse_fields("no json here") == {"dense": "no json here"}
    assert compose({"short": "a red square", "background": "grass", "camera": "pan_left"}) == (
        "a red square. background: grass. the camera pans left.")
    root, _, _, _ = run
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    manifest = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    redo, edited = (out / manifest[0]["file"]).with_suffix(""), (out / manifest[1]["file"]).with_suffix("")
    redo.with_suffix(".txt").unlink()
    redo.with_suffix(".caption.json").unlink()
    edited.with_suffix(".txt").write_text("a caption written by hand\n")
    captioner = {"model": str(_tiny_vlm(tmp_path / "vlm")), "frames": 2, "max_new_tokens": 6}
    result = curate(root / "raw", out, config(captioner=captioner), progress=False)
    rows = {row["file"]: row for row in map(json.loads, (out / "metadata.jsonl").read_text().splitlines())}
    assert result.analyzed == result.exported == 0
    fresh = rows[manifest[0]["file"]]
    assert fresh["caption_fields"]["camera"] == manifest[0]["camera"] and fresh["caption_fields"]["dense"]
    assert fresh["caption"] == compose(fresh["caption_fields"]) != manifest[0]["caption"]
    assert rows[manifest[1]["file"]]["caption"] == "a caption written by hand"
    assert all(rows[m["file"]]["caption"] == m["caption"] for m in manifest[2:])
    with pytest.raises(ValueError, match="local paths only"):
        curate(root / "raw", tmp_path / "new", config(captioner={"model": str(tmp_path / "none")}), progress=False)
    assert not (tmp_path / "new").exists()


def test_duplicate_groups_match_brute_force():
    from hunyuan_video.curate.dedup import duplicate_groups, hamming

    rng = np.random.default_rng(0)
    keys = []
    for _ in range(40):  # noisy copies of 40 clips' three key-frame hashes: 0-6 bits flipped in each
        centre = [int(rng.integers(0, 2**63)) for _ in range(3)]
        for _ in range(int(rng.integers(1, 4))):
            keys.append([c ^ sum(1 << int(b) for b in rng.choice(64, int(rng.integers(0, 7)), replace=False))
                         for c in centre])
    parent = list(range(len(keys)))

    def root(i):
        return i if parent[i] == i else root(parent[i])

    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            if sum(map(hamming, keys[i], keys[j])) <= 3 * 6:
                parent[root(j)] = root(i)
    brute = {}
    for i in range(len(keys)):
        brute.setdefault(root(i), []).append(i)
    expected = sorted(g for g in brute.values() if len(g) > 1)
    assert len(expected) >= 10 and sorted(duplicate_groups(keys, 6)) == expected


def test_long_shots_are_split_and_short_ones_rejected(run):
    from hunyuan_video.curate.analyze import analyze_video

    raw = run[0] / "raw"
    digest = file_hash(raw / "short_c.mp4")  # two shots of 2.3 s at 12 fps
    split = analyze_video(raw / "short_c.mp4", digest, config(min_seconds=0.5, max_seconds=1.0))
    assert len(split["clips"]) == 6 and all(6 <= c["frames"] <= 12 and not c["reasons"] for c in split["clips"])
    assert [c["shot"] for c in split["clips"]] == [0, 0, 0, 1, 1, 1]
    ranges = [(c["start"], c["end"]) for c in split["clips"]]
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))  # in order, never overlapping
    short = analyze_video(raw / "short_c.mp4", digest, config(min_seconds=2.5, max_seconds=10.0))
    assert len(short["clips"]) == 2 and all(c["reasons"][0].startswith("too short:") for c in short["clips"])


def test_flow_that_no_camera_movement_explains_is_complex():
    from hunyuan_video.curate.motion import camera_label, flow_fit

    rng = np.random.default_rng(0)
    texture = (rng.random((24, 32)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)  # 96x128, blocky
    pan = flow_fit(texture, np.roll(texture, -2, axis=1))  # the whole scene slides left: a pan right
    halves = np.concatenate([np.roll(texture, 2, axis=1)[:48], np.roll(texture, -2, axis=1)[48:]])  # opposite ways
    split = flow_fit(texture, halves)
    assert camera_label([pan] * 4, config()) == "pan_right" and pan[0] < -1
    assert camera_label([split] * 4, config()) == "complex"


def test_probe_reads_the_rotation_and_frames_come_upright(tmp_path):
    import av

    from hunyuan_video.curate.probe import FrameStream, probe

    with av.open(str(tmp_path / "phone.mp4"), "w") as container:  # filmed sideways: stored 32x64, shown 64x32
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # counter-clockwise
        stored = np.zeros((32, 64, 3), np.uint8)
        stored[:, :8] = 255  # a white band on the stored frame's left: the shown frame's bottom
        for _ in range(6):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        container.mux(stream.encode())
    info = probe(tmp_path / "phone.mp4")
    assert (info.rotation, info.height, info.width, info.frames, info.codec) == (270, 64, 32, 6, "h264")
    frames = list(FrameStream(tmp_path / "phone.mp4", info.rotation))
    assert len(frames) == 6 and frames[0].shape == (64, 32, 3)
    assert frames[0][-4:].mean() > 240 and frames[0][:-12].mean() < 15


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    from hunyuan_video.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"detectors": ["magic"]}))
    (tmp_path / "raw").mkdir()
    for argv, words in (([str(tmp_path / "none"), str(tmp_path / "o")], "does not exist"),
                        ([str(tmp_path / "raw"), str(tmp_path / "o")], "no video files"),
                        ([str(tmp_path / "raw"), str(tmp_path / "o"), "--config", str(bad)], "detectors must be")):
        with pytest.raises(SystemExit) as exit_info:
            main(["data", "curate", *argv, "--quiet"])
        message = str(exit_info.value.code)
        assert words in message and "\n" not in message and message.startswith("hunyuan-video data curate:")
        assert not (tmp_path / "o").exists()
