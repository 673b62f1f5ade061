#!/usr/bin/env bash
# Rebuild the embedded tiny model's text encoders and transformer from scratch, then measure it. The VAE in
# hunyuan_video/assets/tiny/hunyuan-video-t2v-720p/vae comes from configs/vae_tiny.json (+ the decoder-only
# configs/vae_tiny_decoder.json, which keeps its latent space, so this transformer stays valid). Run from the
# repository root; about 45 minutes on a 2-core CPU (shared). One intra-op thread per process: on a loaded
# 2-core machine more threads only add contention (a matmul ran ~4x slower with 2 threads than with 1).
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TINY=hunyuan_video/assets/tiny

# 1. The synthetic world (seed 0): 1200 training clips of 17x64x64. Its test split (unseen colour/shape/motion
#    combinations) is only used by the evaluation in step 5.
hunyuan-video data synth data_cache/tiny_dit_1200 --clips 1200 --seed 0 --size 64 --frames 17

# 2. The text encoders: a 4-layer Llama pretrained as a language model on 4000 train captions in the video
#    template, and a 2-layer CLIP text model trained to tell which words a caption holds.
python -m hunyuan_video.train.text_encoders "$TINY" --captions 4000 --world-seed 0 --seed 0

# 3. VAE latents (as videos 17x64x64 and as first-frame images 1x64x64) and text states, encoded once.
hunyuan-video cache configs/dit_tiny.json

# 4. The transformer: images first, then video mixed with images (configs/dit_tiny.json); the EMA weights are
#    exported to $TINY/hunyuan-video-t2v-720p/transformers/.
hunyuan-video train configs/dit_tiny.json

# 5. Quality on 100 held-out captions, and the contact sheet (results go to BENCHMARKS.md by hand).
python bench/tiny_quality.py --out outputs/tiny_quality --videos 100
