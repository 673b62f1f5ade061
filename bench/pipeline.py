"""Text-to-video end to end, ours against diffusers' HunyuanVideoPipeline: same folder, same latents, same steps.

Small random parts (a word-level Llama and CLIP, a transformer of `--hidden` width, the "test-tiny" VAE) are saved
once by diffusers in its layout; both pipelines load that folder and sample the same video (prompt encoding, the
Euler steps, the VAE decode). Runs alternate between the two and the median of `--runs` is reported, with, on a
GPU, the peak memory of each and of ours with `enable_model_cpu_offload()`.

    python bench/pipeline.py                                      # CPU, 17 frames at 64x64, 4 steps
    python bench/pipeline.py --device cuda --frames 33 --size 256 --hidden 1024

Prints a markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch
from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoTransformer3DModel
from diffusers import HunyuanVideoPipeline as DiffusersPipeline
from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

from hunyuan_video.checkpoint import transformer_config_to_diffusers
from hunyuan_video.config import VAE_PRESETS, TransformerConfig
from hunyuan_video.pipelines import HunyuanVideoPipeline
from hunyuan_video.text_encoder import VIDEO_TEMPLATE, build_word_tokenizer

PROMPT = "a red ball rolls across the green floor while the camera pans left"


def write_folder(path: str, hidden: int) -> None:
    """Random small parts, saved by diffusers in its pipeline layout."""
    tok, tok2 = build_word_tokenizer([PROMPT], "llm"), build_word_tokenizer([PROMPT], "clip")
    llm = LlamaModel(LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                                 num_attention_heads=4, pad_token_id=tok.pad_token_id))
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok2), hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=2, eos_token_id=tok2.eos_token_id,
                                        bos_token_id=tok2.bos_token_id, pad_token_id=tok2.pad_token_id))
    heads = hidden // 64
    config = TransformerConfig(hidden_size=hidden, heads_num=heads, mm_double_blocks_depth=2,
                               mm_single_blocks_depth=4, rope_dim_list=(16, 24, 24), text_states_dim=128,
                               text_states_dim_2=64, refiner_depth=1)
    transformer = HunyuanVideoTransformer3DModel(**transformer_config_to_diffusers(config))
    v = VAE_PRESETS["test-tiny"]
    vae = AutoencoderKLHunyuanVideo(block_out_channels=v.block_out_channels, layers_per_block=v.layers_per_block,
                                    norm_num_groups=v.norm_num_groups)
    pipe = DiffusersPipeline(text_encoder=llm, tokenizer=tok, transformer=transformer, vae=vae,
                             scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=clip,
                             tokenizer_2=tok2)
    pipe.save_pretrained(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=64, help="height and width in pixels")
    parser.add_argument("--hidden", type=int, default=256, help="transformer width (heads of 64)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        write_folder(folder, args.hidden)
        ours = HunyuanVideoPipeline.from_pretrained(folder, dtype=dtype, device=device)
        ref = DiffusersPipeline.from_pretrained(folder, torch_dtype=dtype).to(device)
    ours.progress = False
    ref.set_progress_bar_config(disable=True)
    ref.vae.use_framewise_decoding = False  # diffusers' default 16-frame tiles; ours tiles as the official (64)
    size = dict(height=args.size, width=args.size, num_frames=args.frames, num_inference_steps=args.steps)
    latents = torch.randn(ours.latent_shape(1, args.size, args.size, args.frames), generator=torch.Generator())
    template = {"template": VIDEO_TEMPLATE, "crop_start": None}

    def run_ours() -> torch.Tensor:
        return ours(PROMPT, **size, latents=latents, output_type="pt").frames

    def run_ref() -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.from_numpy(ref(PROMPT, **size, latents=latents.clone(), prompt_template=template,
                                        output_type="np").frames)

    def timed(fn) -> tuple[float, float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        return time.perf_counter() - start, peak, out

    run_ours(), run_ref()  # warm-up
    times, peaks, outputs = {"ours": [], "diffusers": []}, {}, {}
    for _ in range(args.runs):
        for name, fn in (("ours", run_ours), ("diffusers", run_ref)):
            seconds, peaks[name], outputs[name] = timed(fn)
            times[name].append(seconds)
    diff = (outputs["ours"].float() - outputs["diffusers"].float()).abs().max().item()
    t_ours, t_ref = statistics.median(times["ours"]), statistics.median(times["diffusers"])
    offload_peak = float("nan")
    if device.type == "cuda":
        ours.enable_model_cpu_offload(device)
        offload_peak = timed(run_ours)[1]
    print(f"max |ours - diffusers| = {diff:.2e} (frames in [0, 1])")
    print("| config | ours s | diffusers s | ours / diffusers | peak GiB ours / diffusers / ours offloaded |")
    print(f"| hidden {args.hidden}, {args.frames}x{args.size}x{args.size}, {args.steps} steps, {args.dtype}, "
          f"{args.device} | {t_ours:.2f} | {t_ref:.2f} | {t_ours / t_ref:.2f} | "
          f"{peaks['ours']:.2f} / {peaks['diffusers']:.2f} / {offload_peak:.2f} |")


if __name__ == "__main__":
    main()
