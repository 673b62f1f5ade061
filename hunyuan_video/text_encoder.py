"""The frozen text encoders of HunyuanVideo: an LLM (llava-llama-3-8b's language model) and CLIP ViT-L/14's text model.

The LLM reads the prompt wrapped in the official video template, and its states are taken two layers before the
end (no final norm) with the template tokens cropped off: `(B, 256, 4096)` plus a mask. CLIP gives its pooled
output `(B, 768)`. Any Llama-architecture / CLIP-text-architecture pair from `transformers` works through the same
code, which is how the tests and the embedded tiny model run it.

HunyuanVideo-I2V reads the whole LLaVA model instead (`LLaVATextEncoder`): the image goes through its vision tower
into the `<image>` place of the I2V template, and the image's states (every `image_embed_interleave`-th of them)
come before the prompt's.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoTokenizer,
    CLIPTextModel,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
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
# The official `dit-llm-encode-video-i2v` template: the image's tokens in place of `<image>`, the request to describe
# the video after the reference image, the prompt in place of `{}`, then the assistant's header.
IMAGE_TOKEN = "<image>"
I2V_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video by detailing the following aspects "
    "according to the reference image: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>\n\n"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
# The number of Llama-3 tokens before the user prompt in VIDEO_TEMPLATE (BOS included), as the official code states.
LLAMA3_VIDEO_CROP_START = 95
# The same for I2V_TEMPLATE, its `<image>` counted as one token.
LLAMA3_I2V_CROP_START = 103
# The official I2V crop drops the 4 tokens that end at the assistant's `<|end_header_id|>` (Llama-3:
# `<|eot_id|><|start_header_id|>assistant<|end_header_id|>`).
ASSISTANT_HEADER_TOKENS = 4
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
    """With a real Llama-3 tokenizer and an official template, the crop must be the official one (95 tokens for the
    video template, 103 for the I2V one)."""
    is_llama3 = len(tokenizer) >= 128000 and "<|start_header_id|>" in tokenizer.get_vocab()
    official = {VIDEO_TEMPLATE: LLAMA3_VIDEO_CROP_START, I2V_TEMPLATE: LLAMA3_I2V_CROP_START}.get(template)
    if is_llama3 and official is not None and crop_start != official:
        raise ValueError(
            f"the prompt template spans {crop_start} Llama-3 tokens, the official code crops "
            f"{official}: the tokenizer in this folder is not the one HunyuanVideo was trained with"
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


class LLaVATextEncoder(LLMTextEncoder):
    """HunyuanVideo-I2V's text encoder, the whole LLaVA model (vision tower included): prompts and one image each ->
    states `(B, image_tokens // image_embed_interleave + max_length - 4, D)` and mask (1 = real).

    The prompt goes into the I2V template, whose `<image>` token stands for the image's `image_tokens` vision states
    (576 for llava-llama-3-8b); the LLM states are read `hidden_state_skip_layer` layers before the end. Out come
    every `image_embed_interleave`-th state of the image (4 for the token-replace model, 2 for latent-concat), then
    the prompt's states (the template before the prompt and the assistant's header after it cropped off), right-padded.
    """

    model_class = LlavaForConditionalGeneration

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        image_processor,
        max_length: int = 256,
        template: str = I2V_TEMPLATE,
        hidden_state_skip_layer: int = HIDDEN_STATE_SKIP_LAYER,
        image_embed_interleave: int = 4,
    ) -> None:
        if template.count(IMAGE_TOKEN) != 1 or template.index(IMAGE_TOKEN) > template.index("{}"):
            raise ValueError(f"an image-to-video template must hold one {IMAGE_TOKEN} before the prompt's '{{}}'")
        image_token = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if image_token is None or image_token == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {IMAGE_TOKEN} token: not a LLaVA tokenizer")
        if image_token != model.config.image_token_id:
            raise ValueError(f"the tokenizer's {IMAGE_TOKEN} is id {image_token}, the model's "
                             f"{model.config.image_token_id}: tokenizer and model do not belong together")
        if image_embed_interleave < 1:
            raise ValueError(f"image_embed_interleave must be at least 1, got {image_embed_interleave}")
        super().__init__(model, tokenizer, max_length, template, hidden_state_skip_layer)
        self.image_processor = image_processor
        self.image_embed_interleave = image_embed_interleave
        self.image_token = image_token
        self.image_start = template_crop_start(tokenizer, template.split(IMAGE_TOKEN)[0] + "{}")
        self.header_end = tokenizer.convert_tokens_to_ids("<|end_header_id|>")
        self.template_headers = tokenizer(template.replace("{}", ""))["input_ids"].count(self.header_end)
        vision = model.config.vision_config
        full = model.config.vision_feature_select_strategy == "full"  # "default" drops the CLS state
        self.image_tokens = (vision.image_size // vision.patch_size) ** 2 + full

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        tokenizer_dir: str | Path | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        image_processor_dir: str | Path | None = None,
        **kwargs,
    ) -> LLaVATextEncoder:
        """Load the LLaVA model from `model_dir`, its tokenizer from `tokenizer_dir` and its image processor from
        `image_processor_dir` (both default to `model_dir`)."""
        image_processor = AutoImageProcessor.from_pretrained(str(image_processor_dir or model_dir))
        return super().from_pretrained(model_dir, tokenizer_dir, dtype, device, image_processor=image_processor,
                                       **kwargs)

    @torch.no_grad()
    def forward(self, prompts: list[str], images: list) -> tuple[torch.Tensor, torch.Tensor]:
        """States and mask of `prompts`, each with its image (`images`: PIL images or uint8 `(H, W, 3)` arrays, as
        the image processor takes them; it resizes and crops them itself)."""
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images for {len(prompts)} prompts: give one image per prompt")
        texts = [self.template.format(p) for p in prompts]
        ids, mask = self.tokenize(texts, self.max_length + self.crop_start, prompts)
        start, n = self.image_start, self.image_tokens
        full_ids = torch.cat([ids[:, :start], torch.full_like(ids[:, :1], self.image_token).expand(-1, n),
                              ids[:, start + 1:]], dim=1)
        full_mask = torch.cat([mask[:, :start], torch.ones_like(mask[:, :1]).expand(-1, n), mask[:, start + 1:]], 1)
        positions = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 1)
        pixels = self.image_processor(images, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        out = self.model(input_ids=full_ids, attention_mask=full_mask, position_ids=positions, pixel_values=pixels,
                         output_hidden_states=True, use_cache=False)
        states = out.hidden_states[-(self.hidden_state_skip_layer + 1)]
        image_states = states[:, start:start + n:self.image_embed_interleave]
        keep = torch.tensor([self._prompt_positions(row) for row in ids.tolist()], device=mask.device)
        text_states = torch.gather(states, 1, (keep + n - 1)[..., None].expand(-1, -1, states.shape[-1]))
        text_mask = torch.gather(mask, 1, keep)
        image_mask = torch.ones_like(mask[:, :image_states.shape[1]])
        return torch.cat([image_states, text_states], dim=1), torch.cat([image_mask, text_mask], dim=1)

    def _prompt_positions(self, ids: list[int]) -> list[int]:
        """Where the prompt's tokens sit in one templated row of ids: after the template's start, without the
        assistant's header (a prompt cut short by max_length has lost that header and loses its last tokens)."""
        headers = [i for i, token in enumerate(ids) if token == self.header_end]
        after = headers[-1] + 1 if len(headers) == self.template_headers else len(ids)
        return [*range(self.crop_start, after - ASSISTANT_HEADER_TOKENS), *range(after, len(ids))]


class CLIPTextEncoder(_PromptEncoder):
    """The CLIP encoder: prompts -> the pooled output `(B, D)` (the final-norm state at the end-of-text token)."""

    model_class = CLIPTextModel  # takes the text tower out of a full CLIP folder (openai/clip-vit-large-patch14)

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int = 77) -> None:
        super().__init__(model, tokenizer, max_length)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        ids, mask = self.tokenize(prompts, self.max_length, prompts)
        return self.model(input_ids=ids, attention_mask=mask).pooler_output
