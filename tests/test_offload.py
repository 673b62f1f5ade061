"""Offload with prefetch (the logic on the CPU; CUDA streams are used on CUDA only) and releasing the text
encoders after encoding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_transformer import TINY, make_inputs, randomize_

import hunyuan_video
from hunyuan_video import HunyuanVideoTransformer
from hunyuan_video.pipelines import HunyuanVideoPipeline, ModelOffload

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_MODEL = Path(hunyuan_video.__file__).parent / "assets" / "tiny"


def test_prefetch_brings_the_next_block_while_the_current_one_runs():
    model = randomize_(HunyuanVideoTransformer(TINY), seed=6).eval()
    inputs = make_inputs(TINY)
    with torch.no_grad():
        want = model(**inputs)
    offload = ModelOffload("cpu")
    assert offload.copy_stream is None  # the side stream exists on CUDA only
    brought, prefetched, seen = [], [], []
    bring, prefetch = offload.bring, offload.prefetch
    offload.bring = lambda tensors: brought.append(len(tensors)) or bring(tensors)
    offload.prefetch = lambda tensors: prefetched.append(len(tensors)) or prefetch(tensors)
    blocks = [*model.double_blocks, *model.single_blocks]
    hooks = [b.register_forward_hook(lambda *args: seen.append(len(brought))) for b in blocks]  # before send-back
    try:
        with torch.no_grad(), offload.on_device(model, stream_blocks=True):
            got = model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(got, want)
    # brought: the resident part, block 0, then block i + 1 as block i starts; block i has run once i + 2 are in
    assert seen == [min(i + 3, len(blocks) + 1) for i in range(len(blocks))]
    assert len(prefetched) == len(blocks) - 1
    assert not any(b._forward_pre_hooks or b._forward_hooks for b in blocks)


@pytest.fixture(scope="module")
def tiny_pipe() -> HunyuanVideoPipeline:
    pipe = HunyuanVideoPipeline.from_pretrained(TINY_MODEL, device="cpu")
    pipe.progress = False
    return pipe


def test_offloaded_pipeline_with_prefetch_and_released_encoders_gives_the_same_latents(tiny_pipe):
    call = dict(prompt="a red square moves left", num_inference_steps=2, seed=3, output_type="latent")
    want = tiny_pipe(**call).frames
    pipe = HunyuanVideoPipeline.from_pretrained(TINY_MODEL, device="cpu", offload=True)
    pipe.progress, pipe.release_text_encoders = False, True
    assert pipe.offload is not None
    assert torch.equal(pipe(**call).frames, want)
    assert pipe.text_encoder is None and pipe.text_encoder_2 is None
    with pytest.raises(ValueError, match="text encoders were released after the first prompt"):
        pipe(**call)


@pytest.mark.parametrize("level, budget, streamed", [("model", None, False), ("auto", 2**40, False),
                                                      ("auto", 1, True), ("blocks", None, True)])
def test_offload_levels_bring_the_transformer_whole_or_block_by_block(tiny_pipe, monkeypatch, level, budget,
                                                                      streamed):
    call = dict(prompt="a red square moves left", num_inference_steps=2, seed=3, output_type="latent")
    want = tiny_pipe(**call).frames
    if budget is not None:  # what half of the free memory is at the moment of use
        monkeypatch.setattr("hunyuan_video.pipelines.offload.auto_budget", lambda device: budget)
    tiny_pipe.enable_model_cpu_offload("cpu", level)
    loans, bring = [], tiny_pipe.offload.bring
    tiny_pipe.offload.bring = lambda tensors: loans.append({id(t) for t in tensors}) or bring(tensors)
    try:
        assert torch.equal(tiny_pipe(**call).frames, want)
    finally:
        tiny_pipe.to("cpu")
    tr = tiny_pipe.transformer
    whole = {id(t) for t in [*tr.parameters(), *tr.buffers()]}
    assert (whole in loans) != streamed  # brought at once, or its blocks one at a time
    blocks = len(tr.double_blocks) + len(tr.single_blocks)
    assert len(loans) == 3 + streamed * 2 * blocks  # the text encoders, the transformer or its rest, 2 steps of blocks


def test_an_unknown_offload_level_is_refused(tiny_pipe):
    with pytest.raises(ValueError, match="offload level must be one of model, blocks, auto, got 'layers'"):
        tiny_pipe.enable_model_cpu_offload("cpu", "layers")
    assert tiny_pipe.offload is None
