"""Guidance distillation: the student starts as the teacher's conditional output, learns the teacher's CFG output in
one pass, resumes exactly, samples with embedded guidance; the config's errors are clear."""

import pytest
import torch
from test_cache import VIDEO, make_setup
from test_train_dit import assert_same_run

from hunyuan_video.checkpoint import load_transformer, save_transformer
from hunyuan_video.train.cache import build_cache, cache_fingerprint, read_cache
from hunyuan_video.train.common import load_checkpoint, read_jsonl
from hunyuan_video.train.distill import distillation_loss, draw_scales, guided_velocity, load_teacher
from hunyuan_video.train.dit import DiTTrainConfig, build_transformer, draw_batch, draw_noise, empty_captions, train

DISTILL = {"guidance_min": 1.0, "guidance_max": 6.0}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The tiny setup's fields (cache built) with `init_from` a random teacher instead of `transformer`."""
    root = tmp_path_factory.mktemp("distill")
    fields = make_setup(root)
    config = DiTTrainConfig(**fields)
    build_cache(config, progress=False)
    save_transformer(build_transformer(config), root / "teacher.safetensors")
    fields = {k: v for k, v in fields.items() if k != "transformer"}
    return {**fields, "init_from": str(root / "teacher.safetensors"), "distill": DISTILL}


def held_batches(config: DiTTrainConfig, count: int = 6) -> list[dict]:
    """Fixed batches (with times, noise, scales and the empty caption) to compare models on."""
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)
    gen = torch.Generator().manual_seed(123)
    batches = []
    for _ in range(count):
        batch = draw_batch(cache, config.stages[-1], 0.0, gen)
        batch.update(draw_noise(batch["x0"].shape, config, gen), scale=draw_scales(len(batch["x0"]), config.distill,
                                                                                   gen))
        batches.append({**batch, **empty_captions(cache, batch)})
    return batches


def test_the_student_starts_as_the_teachers_conditional_output(base):
    config = DiTTrainConfig(**base)
    teacher, student = load_teacher(config.init_from), build_transformer(config).eval()
    assert student.config.guidance_embed and not teacher.config.guidance_embed
    batch = held_batches(config, 1)[0]
    x_t, t = batch["x0"] * 0.5 + batch["noise"] * 0.5, batch["t"] * 1000
    text = batch["text_states"], batch["text_mask"], batch["text_states_2"]
    with torch.no_grad():
        conditional = teacher(x_t, t, *text)
        for scale in (1.0, 6.0):
            assert torch.equal(student(x_t, t, *text, torch.full((len(t),), scale * 1000)), conditional)
        # guidance 1 is the conditional pass; a larger scale moves away from the empty caption's output
        torch.testing.assert_close(guided_velocity(teacher, x_t, batch["t"], batch, torch.ones(len(t))), conditional)
        assert not torch.allclose(guided_velocity(teacher, x_t, batch["t"], batch, torch.full((len(t),), 6.0)),
                                  conditional)


def test_distillation_lowers_the_loss_and_samples_with_embedded_guidance(base, tmp_path, monkeypatch):
    from hunyuan_video.pipelines import HunyuanVideoPipeline

    calls, sample = [], HunyuanVideoPipeline.__call__

    def recorded(self, *args, **kwargs):
        calls.append(kwargs)
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(HunyuanVideoPipeline, "__call__", recorded)
    stages = [{"name": "video", "steps": 60, "batch_size": 4, "buckets": [VIDEO]}]
    config = DiTTrainConfig(**{**base, "out_dir": str(tmp_path), "stages": stages}, lr=2e-3, warmup_steps=3,
                            caption_dropout=0.0, ema_decay=0.0, log_every=1, checkpoint_every=1000,
                            sample_prompts=["a red circle grows"], sample_steps=2, sample_size=(9, 32, 32))
    teacher, batches = load_teacher(config.init_from), held_batches(config)

    def held_loss(student) -> float:  # how far the one-pass student is from the teacher's CFG, on fixed inputs
        with torch.no_grad():
            return sum(float(distillation_loss(student, teacher, b)) for b in batches) / len(batches)

    before = held_loss(build_transformer(config))
    train(config, progress=False)
    student = load_transformer(tmp_path / "transformer_ema.safetensors")
    assert student.config.guidance_embed
    after = held_loss(student)
    assert after < 0.5 * before, (before, after)
    losses = [r["loss"] for r in read_jsonl(tmp_path / "log.jsonl")]
    assert len(losses) == 60 and sum(losses[-20:]) < 0.8 * sum(losses[:20])
    # only the student is trained and checkpointed
    assert set(load_checkpoint(tmp_path / "checkpoint.pt")["model"]) == set(student.state_dict())
    from hunyuan_video.video_io import read_video  # a guidance-embedding model samples only when given guidance

    assert read_video(tmp_path / "samples" / "step_000060" / "0.mp4").shape == (9, 32, 32, 3)
    # one pass per step, at the CFG scale the samples ask for, embedded
    assert [(c["guidance_scale"], c["cfg_scale"]) for c in calls] == [(config.sample_guidance, 1.0)]


def test_distillation_resume_is_exact(base, tmp_path):
    fields = {**base, "checkpoint_every": 2, "log_every": 1, "caption_dropout": 0.5}
    train(DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "straight")}), progress=False)
    resumed = DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "resumed")})
    train(resumed, max_steps=3, progress=False)
    train(resumed, resume=True, progress=False)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed", 4)


def test_distillation_config_errors_are_clear(base, tmp_path):
    fields = {**base, "out_dir": str(tmp_path / "run")}
    without_teacher = {k: v for k, v in fields.items() if k != "init_from"}
    with pytest.raises(ValueError, match="distill needs a teacher"):
        DiTTrainConfig(**without_teacher)
    with pytest.raises(ValueError, match="leave out `transformer`"):
        DiTTrainConfig(**fields, transformer={"hidden_size": 64})
    with pytest.raises(ValueError, match="leave out lora"):
        DiTTrainConfig(**fields, lora={"rank": 4})
    with pytest.raises(ValueError, match="guidance_min <= guidance_max"):
        DiTTrainConfig(**{**fields, "distill": {"guidance_min": 5, "guidance_max": 2}})
    with pytest.raises(ValueError, match="distill: unknown keys.*scale"):
        DiTTrainConfig(**{**fields, "distill": {"scale": 5}})
    # a student (guidance embedding) cannot be a teacher
    student = tmp_path / "student.safetensors"
    save_transformer(build_transformer(DiTTrainConfig(**fields)), student)
    with pytest.raises(ValueError, match="already embeds guidance"):
        train(DiTTrainConfig(**{**without_teacher, "distill": {**DISTILL, "teacher": str(student)}}), progress=False)
    # with `distill.teacher`, `init_from` may be the student to go on from: it loads as it is
    go_on = DiTTrainConfig(**{**fields, "init_from": str(student),
                              "distill": {**DISTILL, "teacher": base["init_from"]}})
    assert torch.equal(build_transformer(go_on).state_dict()["guidance_in.mlp.2.weight"],
                       load_transformer(student).state_dict()["guidance_in.mlp.2.weight"])
    assert not (tmp_path / "run").exists()
