"""The tiny text encoders: their pretraining saves a pair in a real model's layout that the package's encoders read,
and the shipped pair keeps words that share every context ("left" / "right", the background colours) apart in the
states the transformer reads (a tied-embedding LM does not)."""

from pathlib import Path

import pytest
import torch
from tiny_models import tiny_clip

from hunyuan_video import cli
from hunyuan_video.text_encoder import CLIPTextEncoder, LLMTextEncoder, build_word_tokenizer
from hunyuan_video.tiny.synth import caption_vocabulary, sample_clip
from hunyuan_video.tiny.text_encoders import (
    TinyTextEncoderConfig,
    binding_gap,
    make_tiny_text_encoders,
    object_word_targets,
    rebind_clip,
    state_spread,
    swap_gap,
)

CAPTIONS = [sample_clip(i, 0, "train").caption for i in range(300)]
LEFT = "a medium red circle moves to the left on a black background"
TINY = Path(cli.__file__).parent / cli.TINY_MODEL


def test_pretraining_saves_a_pair_the_encoders_read(tmp_path):
    torch.manual_seed(0)
    config = TinyTextEncoderConfig(llm_hidden=32, llm_layers=3, llm_heads=2, llm_steps=150, clip_hidden=16,
                                   clip_layers=1, clip_heads=1, clip_steps=20, batch_size=16)
    losses = make_tiny_text_encoders(CAPTIONS, tmp_path, config, extra_words=caption_vocabulary())
    assert losses["llm"][-1] < 0.5 * losses["llm"][0] and losses["clip"][-1] < losses["clip"][0]
    assert CLIPTextEncoder.from_pretrained(tmp_path / "text_encoder_2")([LEFT]).shape == (1, 16)
    llm = LLMTextEncoder.from_pretrained(tmp_path / "text_encoder", max_length=32)
    assert not llm.model.config.tie_word_embeddings  # untied, as in Llama-3-8B
    assert "pretraining_head" not in dict(llm.model.named_modules())  # the pretraining head is not saved
    states, mask = llm([LEFT])
    assert states.shape == (1, 32, 32) and int(mask.sum()) == len(LEFT.split()) + 1  # the words and <|eot_id|>


@pytest.fixture(scope="module")
def shipped_llm():
    llm = LLMTextEncoder.from_pretrained(TINY / "text_encoder", max_length=64)
    return llm, state_spread(llm, CAPTIONS[:200])


@pytest.mark.parametrize("word, twin", [("left", "right"), ("black", "gray"), ("red", "blue")])
def test_shipped_llm_keeps_words_of_the_same_contexts_apart(shipped_llm, word, twin):
    llm, spread = shipped_llm
    at_word, _ = swap_gap(llm, LEFT, word, twin)
    assert at_word > 0.25 * spread


def test_clip_targets_say_which_words_each_object_holds():
    tok = build_word_tokenizer(caption_vocabulary(), "clip")
    caption = "a small red circle grows and a large blue star slides left on a black background"
    targets = object_word_targets(tok, [caption])[0]
    words = [set(tok.convert_ids_to_tokens(row.nonzero()[:, 0].tolist())) for row in targets]
    assert words == [{"and", "on", "a", "black", "background"}, {"a", "small", "red", "circle", "grows"},
                     {"a", "large", "blue", "star", "slides", "left"}]


def test_rebind_clip_binds_two_object_captions_and_keeps_one_object_ones(tmp_path):
    tok = build_word_tokenizer(caption_vocabulary(), "clip")
    tiny_clip(tok, hidden=32).save_pretrained(tmp_path / "before")
    tok.save_pretrained(tmp_path / "before")
    config = TinyTextEncoderConfig(clip_steps=600, batch_size=32, lr=3e-3, clip_anchor_weight=1.0)
    losses = rebind_clip(tmp_path / "before", tmp_path / "after", CAPTIONS, config)
    assert sum(losses[-20:]) < 0.5 * sum(losses[:20])
    before, after = (CLIPTextEncoder.from_pretrained(tmp_path / name) for name in ("before", "after"))
    held_out = [sample_clip(i, 0, "test").caption for i in range(200)]
    assert binding_gap(after, held_out) > 2 * binding_gap(before, held_out)
    one = [c for c in held_out if " and a " not in c]
    spread = (before(one) - before(one).roll(1, 0)).norm(dim=1).mean()
    assert (after(one) - before(one)).norm(dim=1).mean() < 0.2 * spread  # the anchor holds one-object captions


def test_shipped_clip_binds_words_to_objects():
    # Two-object held-out captions against the same captions with the motions swapped: a bag-of-words CLIP gives
    # both nearly one pooled vector (gap 0.05 of the spread), the shipped one 0.26.
    clip = CLIPTextEncoder.from_pretrained(TINY / "text_encoder_2")
    assert binding_gap(clip, [sample_clip(i, 0, "test").caption for i in range(400)]) > 0.15
