"""What teaching the embedded tiny model a new concept builds on: the new-concept world (pink, heart, moving in a
circle), the evaluator's palette with pink, and new words in the tiny text encoders (old captions encode bit for bit
as before)."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import WORDS, tiny_clip, tiny_llm, tiny_tokenizers
from transformers import AutoModel, CLIPTextModel

from hunyuan_video import cli
from hunyuan_video.text_encoder import CLIPTextEncoder, LLMTextEncoder, build_word_tokenizer
from hunyuan_video.tiny.evaluate import NEW_CONCEPT_PALETTE, detect, parse_caption, score
from hunyuan_video.tiny.synth import (
    COLOURS,
    NEW_COLOURS,
    NEW_MOTIONS,
    NEW_SHAPES,
    caption_vocabulary,
    generate,
    held_out_combos,
    light_background_words,
    new_concept_words,
    render_clip,
    sample_clip,
)
from hunyuan_video.tiny.text_encoders import add_words

TINY = Path(cli.__file__).parent / cli.TINY_MODEL
OLD_CAPTIONS = [sample_clip(i, 0, split).caption for split in ("train", "test") for i in range(12)]


def test_the_default_world_is_unchanged():
    # Captions of the default world before the new-concept world existed (its clips do not depend on it).
    assert [sample_clip(i, 0).caption for i in range(2)] == [
        "a medium white triangle drifts fast diagonally down and right against a dark blue background",
        "a medium yellow circle grows on a gray gradient background",
    ]
    assert not set(new_concept_words()) & set(caption_vocabulary())
    assert not {w for c in OLD_CAPTIONS for w in c.split()} & set(new_concept_words())


def test_new_concept_clips_show_a_new_colour_shape_or_motion_and_keep_their_held_out_split():
    held = held_out_combos(0, new_concepts=True)
    train = [sample_clip(i, 0, "train", new_concepts=True) for i in range(80)]
    test = [sample_clip(i, 0, "test", new_concepts=True) for i in range(30)]
    for clip in train + test:
        main = clip.objects[0]
        assert main.colour in NEW_COLOURS or main.shape in NEW_SHAPES or main.motion in NEW_MOTIONS, clip.caption
        assert all(o.colour in COLOURS and o.shape not in NEW_SHAPES and o.motion not in NEW_MOTIONS
                   for o in clip.objects[1:]), clip.caption
        assert set(clip.caption.split()) <= set(caption_vocabulary()) | set(new_concept_words())
        assert parse_caption(clip.caption)[0] == {k: v for k, v in asdict(main).items()
                                                  if k in ("size", "colour", "shape", "motion", "speed")}
    assert not {(c.objects[0].colour, c.objects[0].shape, c.objects[0].motion) for c in train} & held
    assert {(c.objects[0].colour, c.objects[0].shape, c.objects[0].motion) for c in test} <= held
    assert {c.objects[0].colour for c in train} >= {"pink", "red"} and {c.objects[0].shape for c in train} >= {
        "heart", "circle"} and {c.objects[0].motion for c in train} >= {"orbit", "left"}
    # each new concept in about a third of the clips, and at least three held-out combinations of each
    shares = [sum(c.objects[0].colour in NEW_COLOURS for c in train),
              sum(c.objects[0].motion in NEW_MOTIONS for c in train)]
    assert all(15 <= n <= 40 for n in shares), shares
    assert sum(m in NEW_MOTIONS for _, _, m in held) >= 3


def test_the_evaluator_tells_pink_apart_with_the_new_palette():
    clips = [sample_clip(i, 0, "train", new_concepts=True) for i in range(24)]
    pink = [c for c in clips if c.objects[0].colour == "pink"]
    assert pink
    for clip in clips:
        result = score(render_clip(clip), [asdict(o) for o in clip.objects], NEW_CONCEPT_PALETTE)
        assert result["colour_ok"] and result["motion_ok"], (clip.caption, result)
    frames = render_clip(pink[0])
    assert "pink" not in detect(frames).colours  # the default palette does not know it
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        score(frames, [asdict(o) for o in pink[0].objects])


def test_heart_is_drawn_where_its_path_says():
    clip = next(c for c in (sample_clip(i, 0, "train", new_concepts=True) for i in range(50))
                if c.objects[0].shape == "heart" and len(c.objects) == 1)
    frames, obj = render_clip(clip), clip.objects[0]
    for t in (0, len(frames) - 1):
        centre = frames[t, round(obj.y[t]), round(obj.x[t])].astype(int)
        assert np.abs(centre - (COLOURS | NEW_COLOURS)[obj.colour]).max() < 10


def test_synth_keeps_the_two_worlds_apart(tmp_path):
    assert cli.main(["data", "synth", str(tmp_path / "new"), "--clips", "2", "--size", "32", "--frames", "5",
                     "--new-concepts"]) == 0
    world = json.loads((tmp_path / "new" / "world.json").read_text())
    assert world["new_concepts"] is True
    assert sorted(map(tuple, world["held_out"])) == sorted(held_out_combos(0, new_concepts=True))
    rows = [json.loads(line) for line in (tmp_path / "new" / "metadata.jsonl").read_text().splitlines()]
    assert [r["caption"] for r in rows] == [sample_clip(i, 0, "train", new_concepts=True).caption for i in range(2)]
    with pytest.raises(ValueError, match="new-concept world"):
        generate(tmp_path / "new", 1, first=2, progress=False)


def _outputs(encoder: LLMTextEncoder | CLIPTextEncoder, texts: list[str]) -> list[torch.Tensor]:
    """The encoder's outputs as a list: the LLM's states and mask, or CLIP's pooled vectors."""
    out = encoder(texts)
    return list(out) if isinstance(out, tuple) else [out]


def _encoder_folders(tmp_path: Path) -> tuple[Path, Path]:
    llm_tok, clip_tok = tiny_tokenizers()
    for folder, model, tok in ((tmp_path / "llm", tiny_llm(llm_tok), llm_tok),
                               (tmp_path / "clip", tiny_clip(clip_tok), clip_tok)):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return tmp_path / "llm", tmp_path / "clip"


def test_add_words_appends_ids_and_rows_and_keeps_old_texts_bit_for_bit(tmp_path):
    llm_dir, clip_dir = _encoder_folders(tmp_path)
    texts = [" ".join(WORDS[i : i + 7]) for i in range(0, len(WORDS) - 7, 5)]
    for src, cls, table in ((llm_dir, LLMTextEncoder, "embed_tokens"), (clip_dir, CLIPTextEncoder, "token_embedding")):
        old = cls.from_pretrained(src)
        ids = add_words(src, tmp_path / f"{src.name}_new", {"pink": ["red", "blue"], "heart": ["ball"]})
        new = cls.from_pretrained(tmp_path / f"{src.name}_new")
        n = len(old.tokenizer)
        assert ids == {"pink": n, "heart": n + 1} and len(new.tokenizer) == n + 2
        assert new.tokenizer(texts)["input_ids"] == old.tokenizer(texts)["input_ids"]
        assert all(torch.equal(a, b) for a, b in zip(_outputs(old, texts), _outputs(new, texts), strict=True))
        rows = dict(new.model.named_parameters())[next(k for k, _ in new.model.named_parameters() if table in k)]
        vocab = old.tokenizer.get_vocab()
        torch.testing.assert_close(rows[n], rows[[vocab["red"], vocab["blue"]]].mean(0), rtol=0, atol=0)
        torch.testing.assert_close(rows[n + 1], rows[vocab["ball"]], rtol=0, atol=0)
        assert new.tokenizer("pink heart", add_special_tokens=False)["input_ids"] == [n, n + 1]
    with pytest.raises(ValueError, match="already knows the words"):
        add_words(llm_dir, tmp_path / "x", {"red": ["blue"]})
    with pytest.raises(ValueError, match="must map to words the vocabulary holds"):
        add_words(llm_dir, tmp_path / "x", {"pink": ["teal"]})
    with pytest.raises(ValueError, match="another folder"):
        add_words(llm_dir, llm_dir, {"pink": ["red"]})
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name, kind", [("text_encoder", "llm"), ("text_encoder_2", "clip")])
def test_the_embedded_encoders_know_the_new_words_and_read_old_captions_as_without_them(name, kind):
    encoder_cls = LLMTextEncoder if kind == "llm" else CLIPTextEncoder
    length = {"max_length": 64} if kind == "llm" else {}  # the tiny model's text length
    shipped = encoder_cls.from_pretrained(TINY / name, **length)
    old_tok = build_word_tokenizer(caption_vocabulary(), kind)  # the vocabulary the tiny encoders were trained on
    vocab, old_vocab = shipped.tokenizer.get_vocab(), old_tok.get_vocab()
    assert {w: vocab[w] for w in old_vocab} == old_vocab
    added = [w for w in (*new_concept_words(), *light_background_words()) if w not in old_vocab]
    assert sorted(vocab[w] for w in added) == list(range(len(old_vocab), len(vocab)))
    # The same weights with the new rows cut off, over the old tokenizer: an encoder that never had the new words.
    model = (AutoModel if kind == "llm" else CLIPTextModel).from_pretrained(TINY / name)
    model.resize_token_embeddings(len(old_vocab))
    old = encoder_cls(model, old_tok, **length)
    assert all(torch.equal(a, b) for a, b in zip(_outputs(shipped, OLD_CAPTIONS), _outputs(old, OLD_CAPTIONS),
                                                 strict=True))
    with pytest.warns(UserWarning, match="do not know the words 'teal'"):
        shipped(["a small teal heart grows on a black background"])
