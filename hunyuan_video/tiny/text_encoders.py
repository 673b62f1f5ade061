"""The tiny text encoders of the embedded model: a small Llama and a small CLIP text model, given meaning cheaply.

HunyuanVideo conditions on two frozen encoders; the tiny model keeps both, in the same `transformers` classes and
through the same `text_encoder.py` code as the real ones, over a word-level vocabulary of the synthetic captions:
- the Llama is pretrained as a language model on the captions wrapped in the video prompt template (loss on the
  caption tokens only; the template is the same every time), and at the layer the transformer reads, each caption
  token's state must also tell (through a linear head, dropped afterwards) which words the caption holds up to that
  token. A language model alone does not keep such words apart: words seen in the same contexts ("left" and
  "right", the background colours) predict the same next word, and with tied input/output embeddings they end up
  with near-identical embeddings (cosine 0.98 for "left"/"right") and states. Its embeddings are untied, as in
  Llama-3-8B;
- the CLIP text model is trained to predict, from its pooled output, which words each object of the caption holds
  and which words lie around them (a linear head, dropped afterwards), so the pooled vector sums up the whole
  caption and binds attributes to objects. A bag-of-words head gives the same pooled vector to "a red circle moves
  left and a blue square moves up" and to its swap, and a transformer that reads its caption through that vector
  cannot tell which object moves which way (`binding_gap`); `rebind_clip` retrains such a CLIP while one-object
  captions keep their pooled vectors.
Both are then frozen and saved in the layout of a real model: `text_encoder/` and `text_encoder_2/`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from hunyuan_video.text_encoder import (
    HIDDEN_STATE_SKIP_LAYER,
    VIDEO_TEMPLATE,
    CLIPTextEncoder,
    LLMTextEncoder,
    build_word_tokenizer,
    template_crop_start,
)
from hunyuan_video.tiny.synth import object_slots, swap_motions

MAX_OBJECTS = 2  # object phrases a caption of the synthetic world holds at most


@dataclass
class TinyTextEncoderConfig:
    """Sizes and pretraining schedule of the tiny encoder pair."""

    llm_hidden: int = 128
    llm_layers: int = 4
    llm_heads: int = 4
    llm_steps: int = 800
    llm_words_weight: float = 1.0  # the words-so-far loss on the read layer's states, beside next-token prediction
    clip_hidden: int = 64
    clip_layers: int = 2
    clip_heads: int = 2
    clip_steps: int = 800
    clip_anchor_weight: float = 1.0  # rebind_clip: how strongly one-object captions keep their old pooled vectors
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0


def build_tiny_llm(tokenizer: PreTrainedTokenizerFast, config: TinyTextEncoderConfig) -> LlamaForCausalLM:
    """A randomly initialised small Llama language model over `tokenizer`'s vocabulary."""
    llm_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.llm_hidden, intermediate_size=3 * config.llm_hidden,
        num_hidden_layers=config.llm_layers, num_attention_heads=config.llm_heads,
        num_key_value_heads=config.llm_heads, max_position_embeddings=256, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(llm_config)


def build_tiny_clip(tokenizer: PreTrainedTokenizerFast, config: TinyTextEncoderConfig) -> CLIPTextModel:
    """A randomly initialised small CLIP text model over `tokenizer`'s vocabulary (pooled at the end-of-text token)."""
    clip_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=config.clip_hidden, intermediate_size=4 * config.clip_hidden,
        num_hidden_layers=config.clip_layers, num_attention_heads=config.clip_heads, max_position_embeddings=77,
        projection_dim=config.clip_hidden, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(clip_config)


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    for _ in range(steps):
        yield torch.randint(n, (batch_size,), generator=generator).tolist()


def pretrain_llm(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, captions: list[str], config: TinyTextEncoderConfig
) -> list[float]:
    """Next-token training on `VIDEO_TEMPLATE.format(caption)`, the loss on the caption's tokens, plus
    `config.llm_words_weight` times the words-so-far loss on the states the encoder reads; returns the losses.

    The template's prefix is the same for every caption, so each step runs it once (without gradient) and the
    captions attend to its cached keys and values: about 8x less compute than running the whole template.
    """
    crop = template_crop_start(tokenizer)
    enc = tokenizer([VIDEO_TEMPLATE.format(c) for c in captions], padding=True, return_tensors="pt")
    prefix, ids, mask = enc["input_ids"][:1, :crop], enc["input_ids"][:, crop:], enc["attention_mask"][:, crop:]
    positions = torch.arange(crop, crop + ids.shape[1])[None]
    words = F.one_hot(ids, len(tokenizer)).cummax(dim=1).values.float()  # (N, L, V): the words up to each token
    words[..., tokenizer.all_special_ids] = 0.0
    head = torch.nn.Linear(model.config.hidden_size, len(tokenizer))

    def loss(idx: list[int]) -> torch.Tensor:
        with torch.no_grad():
            cache = model.model(input_ids=prefix, use_cache=True).past_key_values
        cache.batch_repeat_interleave(len(idx))
        full_mask = torch.cat([torch.ones(len(idx), crop, dtype=mask.dtype), mask[idx]], dim=1)
        out = model(input_ids=ids[idx], attention_mask=full_mask, past_key_values=cache,
                    position_ids=positions.expand(len(idx), -1), output_hidden_states=True)
        labels = ids[idx, 1:].masked_fill(mask[idx, 1:] == 0, -100)
        next_word = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), labels.flatten())
        real = mask[idx].bool()
        states = out.hidden_states[-(HIDDEN_STATE_SKIP_LAYER + 1)][real]
        words_so_far = F.binary_cross_entropy_with_logits(head(states), words[idx][real])
        return next_word + config.llm_words_weight * words_so_far

    return _train(model, head, config.llm_steps, config, loss, len(captions), "pretrain tiny Llama")


def object_word_targets(tokenizer: PreTrainedTokenizerFast, captions: list[str]) -> torch.Tensor:
    """`(N, MAX_OBJECTS + 1, V)` multi-hot: row 0 the words around the objects (background, template), row k the
    words of the caption's k-th object (`object_slots`); one token per word, as the word-level tokenizer gives."""
    targets = torch.zeros(len(captions), MAX_OBJECTS + 1, len(tokenizer))
    for n, caption in enumerate(captions):
        slots = object_slots(caption)
        ids = tokenizer(caption)["input_ids"][1:-1]  # without <|startoftext|> and <|endoftext|>
        if len(ids) != len(slots):
            raise ValueError(f"{caption!r}: {len(ids)} tokens for {len(slots)} words (a word-level tokenizer needed)")
        if max(slots, default=0) > MAX_OBJECTS:
            raise ValueError(f"{caption!r} names {max(slots)} objects, at most {MAX_OBJECTS} are supported")
        targets[n, slots, ids] = 1.0
    targets[..., tokenizer.all_special_ids] = 0.0
    return targets


def pretrain_clip(
    model: CLIPTextModel, tokenizer: PreTrainedTokenizerFast, captions: list[str], config: TinyTextEncoderConfig,
    anchor: CLIPTextModel | None = None,
) -> list[float]:
    """Train the pooled output to tell, through a linear head, which words each object of the caption holds and which
    words lie around them, so that it binds attributes to objects ("a red circle moves left and a blue square moves
    up" and its swap differ); returns the losses. With `anchor`, the pooled outputs of one-object captions (which
    need no binding) are also held near the anchor's, `config.clip_anchor_weight` x their mean squared distance.
    """
    enc = tokenizer(captions, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    targets = object_word_targets(tokenizer, captions)
    single = ~targets[:, 2:].flatten(1).any(1)  # no word of a second object
    targets = targets.flatten(1)
    head = torch.nn.Linear(model.config.hidden_size, targets.shape[1])
    if anchor is not None:
        with torch.no_grad():
            anchored = anchor(input_ids=ids, attention_mask=mask).pooler_output

    def loss(idx: list[int]) -> torch.Tensor:
        pooled = model(input_ids=ids[idx], attention_mask=mask[idx]).pooler_output
        words = F.binary_cross_entropy_with_logits(head(pooled), targets[idx])
        if anchor is None:
            return words
        keep = single[idx].float()
        drift = ((pooled - anchored[idx]) ** 2).mean(1)
        return words + config.clip_anchor_weight * (drift * keep).sum() / keep.sum().clamp(min=1)

    return _train(model, head, config.clip_steps, config, loss, len(captions), "pretrain tiny CLIP")


def _train(model: torch.nn.Module, head: torch.nn.Module, steps: int, config: TinyTextEncoderConfig, loss_fn, n: int,
           desc: str) -> list:
    """Train `model` on `loss_fn(batch indices)`, with `head` attached as `model.pretraining_head` meanwhile (so that
    it is optimised with the model) and removed afterwards (it is not saved); returns the losses."""
    model.add_module("pretraining_head", head)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    cosine = lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    model.train()
    losses = []
    try:
        bar = tqdm(_batches(n, config.batch_size, steps, generator), total=steps, desc=desc)
        for idx in bar:
            loss = loss_fn(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    finally:
        del model.pretraining_head
    model.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def state_spread(llm: LLMTextEncoder, captions: list[str]) -> float:
    """How far a caption token's state typically lies from the mean state: the mean distance, over `captions`."""
    states, mask = llm(captions)
    real = states[mask.bool()]
    return float((real - real.mean(0)).norm(dim=1).mean())


@torch.no_grad()
def swap_gap(llm: LLMTextEncoder, caption: str, word: str, twin: str) -> tuple[float, float]:
    """The distance between the states of `caption` and of `caption` with the word `word` replaced by `twin`, at that
    word and at the last token (both must be one token; the template's prefix is cropped, so word i is state i)."""
    (a, b), mask = llm([caption, caption.replace(word, twin)])
    at, last = caption.split().index(word), int(mask[0].sum()) - 1
    return float((a[at] - b[at]).norm()), float((a[last] - b[last]).norm())


def make_tiny_text_encoders(
    captions: list[str], out_dir: str | Path, config: TinyTextEncoderConfig | None = None,
    extra_words: tuple[str, ...] | list[str] = (),
) -> dict[str, list[float]]:
    """Build, pretrain and save the tiny pair into `out_dir/text_encoder` and `out_dir/text_encoder_2`.

    `captions` is the training corpus; the vocabulary is every word in it, in `extra_words` and in the template.
    Returns the losses of both pretrainings.
    """
    config = config or TinyTextEncoderConfig()
    if not captions:
        raise ValueError("make_tiny_text_encoders needs a non-empty caption corpus")
    torch.manual_seed(config.seed)
    out_dir = Path(out_dir)
    losses = {}
    llm_tokenizer = build_word_tokenizer([*captions, *extra_words], kind="llm")
    llm = build_tiny_llm(llm_tokenizer, config)
    losses["llm"] = pretrain_llm(llm, llm_tokenizer, captions, config)
    llm.save_pretrained(out_dir / "text_encoder")
    llm_tokenizer.save_pretrained(out_dir / "text_encoder")
    clip_tokenizer = build_word_tokenizer([*captions, *extra_words], kind="clip")
    clip = build_tiny_clip(clip_tokenizer, config)
    losses["clip"] = pretrain_clip(clip, clip_tokenizer, captions, config)
    clip.save_pretrained(out_dir / "text_encoder_2")
    clip_tokenizer.save_pretrained(out_dir / "text_encoder_2")
    return losses


def rebind_clip(clip_dir: str | Path, out_dir: str | Path, captions: list[str],
                config: TinyTextEncoderConfig | None = None) -> list[float]:
    """Fine-tune the CLIP of `clip_dir` (a `text_encoder_2` folder) to `pretrain_clip`'s per-object objective,
    anchored to its own pooled vectors on one-object captions, and save it with its tokenizer to `out_dir`.

    For a CLIP pretrained on a bag of words, whose pooled vector cannot say which object moves which way, so that a
    transformer trained on it keeps what it read from one-object captions.
    """
    config = config or TinyTextEncoderConfig()
    torch.manual_seed(config.seed)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(clip_dir)
    anchor = CLIPTextModel.from_pretrained(clip_dir).eval().requires_grad_(False)
    clip = CLIPTextModel.from_pretrained(clip_dir)
    losses = pretrain_clip(clip, tokenizer, captions, config, anchor=anchor)
    clip.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return losses


@torch.no_grad()
def binding_gap(clip: CLIPTextEncoder, captions: list[str]) -> float:
    """How far apart the pooled vectors of two-object captions and of the same captions with the two objects'
    motions swapped lie, over the mean distance between the pooled vectors of unrelated captions (the median over
    the two-object captions among `captions`). About 0 for a bag-of-words encoder."""
    pairs = [(c, swap_motions(c)) for c in captions if max(object_slots(c), default=0) == 2]
    if not pairs:
        raise ValueError("binding_gap needs two-object captions")
    a, b = clip([p[0] for p in pairs]), clip([p[1] for p in pairs])
    spread = (a - a.roll(1, 0)).norm(dim=1).mean()
    return float(((a - b).norm(dim=1) / spread).median())


# The tables indexed by token id in a saved Llama or CLIP text model (names end so, with or without a prefix).
_VOCAB_TABLES = ("embed_tokens.weight", "lm_head.weight", "token_embedding.weight")


def add_words(src: str | Path, dst: str | Path, words: dict[str, Sequence[str]]) -> dict[str, int]:
    """Copy the word-level text encoder folder `src` (the tiny Llama's or CLIP's) to `dst` with `words` appended to
    its vocabulary; returns each new word's id.

    Each new word takes the next free id, and its row of every table indexed by token id (the input embedding, and
    the Llama's output head) starts as the mean of the rows of the words it maps to (`{"pink": ["red", "blue"]}`).
    Every existing id and weight is copied unchanged, so every text of the old words encodes bit for bit as before.
    """
    import json
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise ValueError(f"add_words writes a copy: OUT must be another folder than {src}")
    config = json.loads((src / "config.json").read_text())
    if config.get("model_type") not in ("llama", "clip_text_model"):
        raise ValueError(f"{src}: add_words takes a Llama or CLIP text model folder, got {config.get('model_type')!r}")
    tokenizer = json.loads((src / "tokenizer.json").read_text())
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    if tokenizer["model"]["type"] != "WordLevel" or sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{src}: add_words needs a word-level tokenizer with ids 0 .. N-1")
    if known := sorted(w for w in words if w.lower() in vocab):
        raise ValueError(f"{src} already knows the words {known}")
    for word, like in words.items():
        if not like or (missing := [w for w in like if w.lower() not in vocab]):
            raise ValueError(f"the word {word!r} must map to words the vocabulary holds, not {missing or list(like)}")
    new_ids = {word: len(vocab) + k for k, word in enumerate(words)}
    with safe_open(src / "model.safetensors", "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    for key in [k for k in tensors if k.endswith(_VOCAB_TABLES)]:
        table = tensors[key]
        rows = [table[[vocab[w.lower()] for w in like]].mean(0) for like in words.values()]
        tensors[key] = torch.cat([table, torch.stack(rows).to(table.dtype)])
    vocab.update({word.lower(): i for word, i in new_ids.items()})
    config["vocab_size"] = len(vocab)
    dst.mkdir(parents=True, exist_ok=True)
    for file in src.iterdir():
        if file.is_file() and file.name not in ("config.json", "tokenizer.json", "model.safetensors"):
            shutil.copy2(file, dst / file.name)
    save_file(tensors, dst / "model.safetensors", metadata=metadata)
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (dst / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False, indent=2) + "\n")
    return new_ids


def main(argv: list[str] | None = None) -> None:
    """`python -m hunyuan_video.tiny.text_encoders OUT`: the tiny pair, pretrained on synthetic train captions."""
    import argparse
    import json

    from hunyuan_video.tiny.synth import caption_vocabulary, sample_clip

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", help="model folder: writes OUT/text_encoder and OUT/text_encoder_2")
    parser.add_argument("--captions", type=int, default=4000, help="train-split captions in the corpus")
    parser.add_argument("--world-seed", type=int, default=0, help="seed of the synthetic world (its held-out split)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    parser.add_argument("--rebind-clip", metavar="FOLDER",
                        help="instead: fine-tune this text_encoder_2 folder's CLIP to bind words to objects "
                             "(rebind_clip) and write it to OUT/text_encoder_2 only")
    parser.add_argument("--clip-steps", type=int, default=TinyTextEncoderConfig.clip_steps)
    parser.add_argument("--lr", type=float, default=TinyTextEncoderConfig.lr)
    args = parser.parse_args(argv)
    captions = [sample_clip(i, args.world_seed, "train").caption for i in range(args.captions)]
    config = TinyTextEncoderConfig(seed=args.seed, clip_steps=args.clip_steps, lr=args.lr)
    if args.rebind_clip:
        losses = {"clip": rebind_clip(args.rebind_clip, Path(args.out) / "text_encoder_2", captions, config)}
    else:
        losses = make_tiny_text_encoders(captions, args.out, config, extra_words=caption_vocabulary())
    summary = {k: {"first": v[0], "last": sum(v[-20:]) / len(v[-20:])} for k, v in losses.items()}
    clip = CLIPTextEncoder.from_pretrained(Path(args.out) / "text_encoder_2")
    held_out = [sample_clip(i, args.world_seed, "test").caption for i in range(400)]
    summary["binding_gap"] = {"train": binding_gap(clip, captions[:400]), "test": binding_gap(clip, held_out)}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
