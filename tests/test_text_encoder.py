import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import WORDS, save_as_full_clip, tiny_clip, tiny_llm, tiny_tokenizers
from transformers import AutoTokenizer, LlamaForCausalLM

from hunyuan_video.text_encoder import (
    VIDEO_TEMPLATE,
    CLIPTextEncoder,
    LLMTextEncoder,
    build_word_tokenizer,
    check_crop_start,
    template_crop_start,
)

PROMPTS = [
    "a cat walks on the grass",
    "red ball",
    "A blue cube spins slowly while the camera pans left, realistic.",
    " ".join(WORDS * 12),  # ~600 tokens: longer than both limits
]


@pytest.fixture(scope="module")
def encoders():
    tok, tok2 = tiny_tokenizers()
    return tiny_llm(tok), tok, tiny_clip(tok2), tok2


def test_embeddings_match_diffusers_encode_prompt(encoders):
    from diffusers import HunyuanVideoPipeline as DiffusersPipeline

    llm, tok, clip, tok2 = encoders
    ref = DiffusersPipeline(text_encoder=llm, tokenizer=tok, transformer=None, vae=None, scheduler=None,
                            text_encoder_2=clip, tokenizer_2=tok2)
    ours_llm, ours_clip = LLMTextEncoder(llm, tok), CLIPTextEncoder(clip, tok2)
    for prompt in PROMPTS:
        # crop_start=None makes diffusers count the template's tokens itself: a check of our own count.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want_states, want_pooled, want_mask = ref.encode_prompt(
                prompt, prompt_template={"template": VIDEO_TEMPLATE, "crop_start": None}, device="cpu")
            states, mask = ours_llm([prompt])
            pooled = ours_clip([prompt])
        assert states.shape == (1, 256, 32) and mask.shape == (1, 256) and pooled.shape == (1, 24)
        torch.testing.assert_close(states, want_states, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(mask, want_mask, rtol=0, atol=0)
        torch.testing.assert_close(pooled, want_pooled, rtol=1e-5, atol=1e-6)


def test_crop_and_mask_follow_the_prompt(encoders):
    llm, tok, _, _ = encoders
    enc = LLMTextEncoder(llm, tok)
    prefix, _ = VIDEO_TEMPLATE.split("{}")
    assert enc.crop_start == len(tok(prefix)["input_ids"]) == template_crop_start(tok)
    states, mask = enc(["a cat walks", "red ball rolls across the green floor"])
    # The prompt's words plus the template's closing <|eot_id|>, then padding.
    assert mask.sum(1).tolist() == [4, 8]
    assert mask[0, :4].all() and not mask[0, 4:].any()
    # The first kept token is the prompt's first word: its state differs from a different first word's.
    other, _ = enc(["dog walks", "red ball rolls across the green floor"])
    assert not torch.allclose(states[0, 0], other[0, 0])
    torch.testing.assert_close(states[1], other[1])  # batch items stay independent


def test_long_prompts_are_cut_with_a_warning_naming_the_count(encoders):
    llm, tok, clip, tok2 = encoders
    long = " ".join(["cat"] * 300)
    with pytest.warns(UserWarning, match=r"256 prompt tokens: the last 45 tokens"):  # 300 + <|eot_id|> - 256
        states, mask = LLMTextEncoder(llm, tok)([long])
    assert mask.all() and states.shape[1] == 256
    with pytest.warns(UserWarning, match=r"77 prompt tokens: the last 225 tokens"):  # 300 + 2 specials - 77
        CLIPTextEncoder(clip, tok2)([long])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LLMTextEncoder(llm, tok)(["a cat walks on the grass"])  # short, and every word known


def test_word_tokenizer_is_stable_and_saves(tmp_path):
    a = build_word_tokenizer(["red ball, green floor"], "clip")
    b = build_word_tokenizer(["green floor", "red ball ,"], "clip")
    assert a.get_vocab() == b.get_vocab()
    ids = a("Red ball, blue")["input_ids"]
    assert ids[0] == a.bos_token_id and ids[-1] == a.eos_token_id and a.unk_token_id in ids and len(ids) == 6
    a.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("Red ball, blue")["input_ids"] == ids and again.model_max_length == 77
    with pytest.raises(ValueError, match="kind"):
        build_word_tokenizer(["x"], "t5")


def test_crop_check_rejects_a_wrong_llama3_tokenizer():
    big = build_word_tokenizer([f"w{i}" for i in range(128000)], "llm")
    crop = template_crop_start(big)
    assert crop != 95  # a word tokenizer splits the template differently from Llama-3's BPE
    with pytest.raises(ValueError, match="95"):
        check_crop_start(big, crop)
    check_crop_start(big, 95)
    check_crop_start(build_word_tokenizer(WORDS), crop)  # small vocabularies are not Llama-3: no check
    with pytest.raises(ValueError, match="exactly one"):
        template_crop_start(big, "no placeholder")


def test_from_pretrained_official_and_diffusers_folders(encoders, tmp_path):
    llm, tok, clip, tok2 = encoders
    causal = LlamaForCausalLM(llm.config)  # the official text_encoder/ is llava's language model, with its lm_head
    causal.model.load_state_dict(llm.state_dict())
    causal.save_pretrained(tmp_path / "text_encoder")
    tok.save_pretrained(tmp_path / "text_encoder")  # official: the tokenizer lives with the model
    save_as_full_clip(clip, tmp_path / "text_encoder_2")  # official: all of openai/clip-vit-large-patch14
    tok2.save_pretrained(tmp_path / "tokenizer_2")  # diffusers: a folder of its own
    enc = LLMTextEncoder.from_pretrained(tmp_path / "text_encoder")
    assert type(enc.model).__name__ == "LlamaModel"
    enc2 = CLIPTextEncoder.from_pretrained(tmp_path / "text_encoder_2", tmp_path / "tokenizer_2", dtype=torch.float64)
    assert enc2.dtype == torch.float64 and type(enc2.model).__name__ == "CLIPTextModel"
    torch.testing.assert_close(enc(PROMPTS[:2])[0], LLMTextEncoder(llm, tok)(PROMPTS[:2])[0])
    torch.testing.assert_close(enc2(PROMPTS[:2]).float(), CLIPTextEncoder(clip, tok2)(PROMPTS[:2]), rtol=1e-5,
                               atol=1e-6)
    weights = tmp_path / "text_encoder" / "model.safetensors"
    state = load_file(weights)
    state.pop(next(k for k in state if "mlp" in k))
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lacks 1 weights"):
        LLMTextEncoder.from_pretrained(tmp_path / "text_encoder")
