#!/usr/bin/env bash
# Rebuild the embedded tiny model (hunyuan_video/assets/tiny) from scratch with this package's own trainers, then
# measure it. Run from the repository root; about 2 hours on a 2-core CPU. One intra-op thread per process: on a
# shared 2-core machine more threads only add contention.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TINY=hunyuan_video/assets/tiny
MODEL=$TINY/hunyuan-video-t2v-720p

# 1. The synthetic world (seed 0): 800 clips of 33x64x64 for the VAE, 32 held-out ones to validate it on, and 1200
#    clips of 17x64x64 for the transformer. The test split's (colour, shape, motion) combinations never appear in
#    training; the transformer is measured on them in step 6.
hunyuan-video data synth data_cache/vae_train --clips 800 --seed 0 --size 64 --frames 33
hunyuan-video data synth data_cache/vae_val --clips 32 --seed 0 --split test --size 64 --frames 17
hunyuan-video data synth data_cache/tiny_dit_1200 --clips 1200 --seed 0 --size 64 --frames 17

# 2. The VAE (configs/vae_tiny.json, ~38 min): the EMA weights of step 3500 become the model's vae/ (its encoder for
#    good). The shipped model stopped there; the config's last 250 steps (17 frames, tiles, GAN) are ~5 s each.
hunyuan-video train-vae configs/vae_tiny.json --max-steps 3500
mkdir -p "$MODEL/vae" && cp runs/vae_tiny/vae/config.json runs/vae_tiny/vae/model.safetensors "$MODEL/vae/"

# 3. The text encoders: a 4-layer Llama pretrained as a language model on 4000 train captions in the video
#    template, and a 2-layer CLIP text model trained to tell which words a caption holds.
python -m hunyuan_video.train.text_encoders "$TINY" --captions 4000 --world-seed 0 --seed 0

# 4. VAE latents (as videos 17x64x64 and as first-frame images 1x64x64) and text states, encoded once.
hunyuan-video cache configs/dit_tiny.json

# 5. The transformer: images first, then video mixed with images (configs/dit_tiny.json); the EMA weights are
#    exported to $MODEL/transformers/. Beside it, on the other core, a decoder-only fine-tune of the VAE
#    (configs/vae_tiny_decoder.json): the encoder, hence the cached latents, stays as it is.
hunyuan-video train-vae configs/vae_tiny_decoder.json > runs/vae_tiny_decoder.log 2>&1 &
hunyuan-video train configs/dit_tiny.json
wait
cp runs/vae_tiny_decoder/vae/config.json runs/vae_tiny_decoder/vae/model.safetensors "$MODEL/vae/"

# 6. Quality on 100 held-out captions, and the contact sheet (results go to BENCHMARKS.md by hand).
python bench/tiny_quality.py --out outputs/tiny_quality --videos 100
