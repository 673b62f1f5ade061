"""The frozen text encoders of HunyuanVideo: an LLM (llava-llama-3-8b's language model) and CLIP ViT-L/14's text model.

The LLM reads the prompt wrapped in the official video template, and its states are taken two layers before the
end (no final norm) with the template tokens cropped off: `(B, 256, 4096)` plus a mask. CLIP gives its pooled
output `(B, 768)`. Any Llama-architecture / CLIP-text-architecture pair from `transformers` works through the same
code, which is how the tests and the embedded tiny model run it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, CLIPTextModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

# The official `dit-llm-encode-video` template: a Llama-3 chat system message asking to describe the video, then the
# user's prompt in place of `{}`.
VIDEO_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)
# The number of Llama-3 tokens before the user prompt in VIDEO_TEMPLATE (BOS included), as the official code states.
LLAMA3_VIDEO_CROP_START = 95
# The official `hidden_state_skip_layer`: the states are read this many layers before the last one.
HIDDEN_STATE_SKIP_LAYER = 2

LLAMA3_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                         "<|eot_id|>", "<pad>", "<unk>")
CLIP_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>", "<unk>")
_WORD_PIECES = re.compile(r"\w+|[^\w\s]+")  # what the `tokenizers` Whitespace pre-tokenizer splits text into


def build_word_tokenizer(texts: Iterable[str], kind: str = "llm") -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer whose vocabulary is every word and punctuation run found in `texts`.

    `kind="llm"` behaves like Llama-3 (BOS `<|begin_of_text|>` first, `<pad>` padding, its chat special tokens, and
    the words of VIDEO_TEMPLATE always in the vocabulary); `kind="clip"` like CLIP (`<|startoftext|> ...
    <|endoftext|>`, padded with `<|endoftext|>`, 77 tokens). Ids depend only on the set of pieces, not their order.
    Stable API: the embedded tiny model builds its tokenizers with it; save with `save_pretrained`.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    if kind not in ("llm", "clip"):
        raise ValueError(f"kind must be 'llm' or 'clip', got {kind!r}")
    texts = list(texts) + ([re.sub(r"<\|\w+\|>", " ", VIDEO_TEMPLATE)] if kind == "llm" else [])
    pieces = sorted({p for text in texts for p in _WORD_PIECES.findall(text.lower())})
    specials = LLAMA3_SPECIAL_TOKENS if kind == "llm" else CLIP_SPECIAL_TOKENS
    vocab = {token: i for i, token in enumerate([*specials, *pieces])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(specials))
    if kind == "llm":
        bos, eos, pad = "<|begin_of_text|>", "<|end_of_text|>", "<pad>"
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
        max_length = int(1e30)  # like Llama-3: no limit of its own
    else:
        bos, eos, pad = "<|startoftext|>", "<|endoftext|>", "<|endoftext|>"
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])]
        )
        max_length = 77
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token="<unk>",
        model_max_length=max_length, padding_side="right",
    )


def template_crop_start(tokenizer: PreTrainedTokenizerBase, template: str = VIDEO_TEMPLATE) -> int:
    """How many tokens (special ones included) come before the user prompt in `template`: the part to crop."""
    if template.count("{}") != 1:
        raise ValueError("a prompt template must hold exactly one '{}' where the prompt goes")
    prefix = template.split("{}")[0]
    return len(tokenizer(prefix, add_special_tokens=True)["input_ids"])


def check_crop_start(tokenizer: PreTrainedTokenizerBase, crop_start: int, template: str = VIDEO_TEMPLATE) -> None:
    """With a real Llama-3 tokenizer and the official template, the crop must be the official 95 tokens."""
    is_llama3 = len(tokenizer) >= 128000 and "<|start_header_id|>" in tokenizer.get_vocab()
    if is_llama3 and template == VIDEO_TEMPLATE and crop_start != LLAMA3_VIDEO_CROP_START:
        raise ValueError(
            f"the video template spans {crop_start} Llama-3 tokens, the official code crops "
            f"{LLAMA3_VIDEO_CROP_START}: the tokenizer in this folder is not the one HunyuanVideo was trained with"
        )


def unknown_words(texts: list[str], ids: list[list[int]], offsets: list[list[tuple[int, int]]], unk_id: int | None
                  ) -> list[str]:
    """The pieces of `texts` that a tokenizer turned into its unknown token (special tokens have empty spans)."""
    return sorted({text[a:b] for text, row, spans in zip(texts, ids, offsets) for i, (a, b) in zip(row, spans)
                   if i == unk_id and b > a})


class _PromptEncoder(nn.Module):
    """A frozen `transformers` text model with its tokenizer; subclasses say what to read from it."""

    model_class: type = AutoModel  # what `from_pretrained` loads the model folder with

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        tokenizer_dir: str | Path | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **kwargs,
    ) -> _PromptEncoder:
        """Load the model from `model_dir` and its tokenizer from `tokenizer_dir` (default: the same folder).
        Weights the encoder does not use (an LM head, CLIP's vision tower) are skipped quietly; missing ones are an
        error."""
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its load report would list every skipped weight
        try:
            model, info = cls.model_class.from_pretrained(str(model_dir), dtype=dtype or torch.float32,
                                                          output_loading_info=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        if info["missing_keys"]:
            missing = sorted(info["missing_keys"])
            raise ValueError(f"{model_dir} lacks {len(missing)} weights of {type(model).__name__}, e.g. {missing[:3]}: "
                             "not a complete text encoder folder")
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or model_dir), padding_side="right")
        return cls(model.to(device), tokenizer, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def tokenize(self, texts: list[str], max_length: int, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and mask `(B, max_length)` of `texts` (the `prompts`, maybe templated), right-padded; longer
        texts are cut, with a warning naming the prompt and how many tokens were dropped."""
        encoded = self.tokenizer(texts, verbose=False, return_offsets_mapping=True)
        full = encoded["input_ids"]
        unknown = unknown_words(texts, full, encoded["offset_mapping"], self.tokenizer.unk_token_id)
        if unknown:  # a word-level vocabulary (the tiny model's) has gaps; say which words fell into them
            warnings.warn(f"the text encoders do not know the words {', '.join(map(repr, unknown))}: they are read "
                          f"as {self.tokenizer.unk_token}", stacklevel=1)
        for prompt, ids in zip(prompts, full):
            if len(ids) > max_length:
                warnings.warn(
                    f"{type(self).__name__} takes {self.max_length} prompt tokens: the last "
                    f"{len(ids) - max_length} tokens of the prompt {prompt[:40]!r}... were dropped",
                    stacklevel=3,
                )
        batch = self.tokenizer(texts, max_length=max_length, padding="max_length", truncation=True,
                               return_tensors="pt")
        return batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)


class LLMTextEncoder(_PromptEncoder):
    """The LLM encoder: prompts in the template -> states `(B, max_length, D)` and mask `(B, max_length)` (1 = real)."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 256,
        template: str = VIDEO_TEMPLATE,
        hidden_state_skip_layer: int = HIDDEN_STATE_SKIP_LAYER,
    ) -> None:
        super().__init__(model, tokenizer, max_length)
        self.template = template
        self.hidden_state_skip_layer = hidden_state_skip_layer
        self.crop_start = template_crop_start(tokenizer, template)
        check_crop_start(tokenizer, self.crop_start, template)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = [self.template.format(p) for p in prompts]
        ids, mask = self.tokenize(texts, self.max_length + self.crop_start, prompts)
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
        states = out.hidden_states[-(self.hidden_state_skip_layer + 1)]
        return states[:, self.crop_start:], mask[:, self.crop_start:]


class CLIPTextEncoder(_PromptEncoder):
    """The CLIP encoder: prompts -> the pooled output `(B, D)` (the final-norm state at the end-of-text token)."""

    model_class = CLIPTextModel  # takes the text tower out of a full CLIP folder (openai/clip-vit-large-patch14)

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int = 77) -> None:
        super().__init__(model, tokenizer, max_length)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        ids, mask = self.tokenize(prompts, self.max_length, prompts)
        return self.model(input_ids=ids, attention_mask=mask).pooler_output
