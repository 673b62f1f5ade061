"""How well the tiny LLM keeps a caption's words apart in the states the transformer reads (results go to
BENCHMARKS.md by hand).

    python bench/tiny_text.py                                   # the shipped text_encoder
    python bench/tiny_text.py --llm runs/te/text_encoder        # another one

For pairs of captions that differ in one word (left/right, black/gray, ...), prints the cosine of the two words'
input embeddings, and the distance between the two captions' states at that word and at the last token, as a
fraction of the spread of the states (mean distance of a state from the mean state over 300 train captions).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import hunyuan_video
from hunyuan_video.text_encoder import LLMTextEncoder
from hunyuan_video.tiny.synth import sample_clip
from hunyuan_video.tiny.text_encoders import state_spread, swap_gap

TINY_LLM = Path(hunyuan_video.__file__).parent / "assets" / "tiny" / "text_encoder"
BASE = "a medium red circle moves to the left on a black background"
PAIRS = [("left", "right"), ("black", "gray"), ("red", "blue"), ("circle", "square"), ("medium", "large")]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default=str(TINY_LLM), help="text_encoder folder (Llama + tokenizer)")
    args = parser.parse_args()
    llm = LLMTextEncoder.from_pretrained(args.llm, max_length=64)
    spread = state_spread(llm, [sample_clip(i, 0, "train").caption for i in range(300)])
    embeddings = llm.model.get_input_embeddings().weight
    print(f"{args.llm}: tied embeddings {llm.model.config.tie_word_embeddings}, state spread {spread:.1f}")
    print("pair            embedding cos  state gap at the word  at the last token")
    for word, twin in PAIRS:
        a, b = (embeddings[llm.tokenizer.convert_tokens_to_ids(w)] for w in (word, twin))
        cos = torch.cosine_similarity(a, b, dim=0)
        at_word, at_last = swap_gap(llm, BASE, word, twin)
        print(f"{word + '/' + twin:15} {cos:13.3f}  {at_word / spread:21.3f}  {at_last / spread:17.3f}")

if __name__ == "__main__":
    main()
