"""The tiny text encoders: their pretraining saves a pair in a real model's layout that the package's encoders read,
and the shipped pair keeps words that share every context ("left" / "right", the background colours) apart in the
states the transformer reads (the session-3 pair, a tied-embedding LM, did not: BENCHMARKS.md)."""

from pathlib import Path

import pytest
import torch

from hunyuan_video import cli
from hunyuan_video.data.synth import caption_vocabulary, sample_clip
from hunyuan_video.text_encoder import CLIPTextEncoder, LLMTextEncoder
from hunyuan_video.train.text_encoders import TinyTextEncoderConfig, make_tiny_text_encoders, state_spread, swap_gap

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
