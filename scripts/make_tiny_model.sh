#!/usr/bin/env bash
# Rebuild the embedded tiny model (hunyuan_video/assets/tiny) from scratch with this package's own trainers, then
# measure it. Run from the repository root; about 4 hours on a 2-core CPU. One intra-op thread per process: on a
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

# 2. The VAE, in four runs. (a) configs/vae_tiny.json from scratch (~38 min; the shipped model stopped at step
#    3500: the config's last 250 steps are ~5 s each); (b) a decoder-only fine-tune of it (~25 min); (c) a full
#    fine-tune mostly on 32x32 crops (~70 min), which exports its step-6500 EMA on the way: the transformer starts
#    on those latents while (c) finishes (step 5); (d) decoder only, beside the transformer's last run (step 5).
hunyuan-video train-vae configs/vae_tiny.json --max-steps 3500
hunyuan-video train-vae configs/vae_tiny_decoder.json
hunyuan-video train-vae configs/vae_tiny_ft.json --max-steps 6500
mkdir -p runs/vae_tiny_ft_6500 && cp -r runs/vae_tiny_ft/vae runs/vae_tiny_ft_6500/

# 3. The text encoders: a 4-layer Llama pretrained as a language model on 4000 train captions in the video
#    template, and a 2-layer CLIP text model trained to tell which words a caption holds.
python -m hunyuan_video.train.text_encoders "$TINY" --captions 4000 --world-seed 0 --seed 0

# 4. VAE latents (as videos 17x64x64 and as first-frame images 1x64x64) and text states, encoded once.
hunyuan-video cache configs/dit_tiny_warm.json

# 5. The transformer, in three runs. A warm-up run from scratch on the step-6500 latents (configs/dit_tiny_warm.json:
#    images first, then video mixed with images), beside the end of the VAE's fine-tune on the other core; then the
#    final VAE goes into the model and the transformer is fine-tuned on its latents (configs/dit_tiny.json).
hunyuan-video train-vae configs/vae_tiny_ft.json --resume > runs/vae_tiny_ft.log 2>&1 &
hunyuan-video train configs/dit_tiny_warm.json
wait
mkdir -p "$MODEL/vae" && cp runs/vae_tiny_ft/vae/config.json runs/vae_tiny_ft/vae/model.safetensors "$MODEL/vae/"
hunyuan-video cache configs/dit_tiny.json
# Beside it, the VAE's last run: decoder only (configs/vae_tiny_ft_decoder.json), so the cached latents stay valid.
hunyuan-video train-vae configs/vae_tiny_ft_decoder.json > runs/vae_tiny_ft_decoder.log 2>&1 &
hunyuan-video train configs/dit_tiny.json
wait
cp runs/vae_tiny_ft_decoder/vae/config.json runs/vae_tiny_ft_decoder/vae/model.safetensors "$MODEL/vae/"
# Last, 3000 more steps with training times shifted towards noise (configs/dit_tiny_shift.json: where layout and
# motion are decided), exported to $MODEL/transformers/. CFG scale / shift were checked on train-split captions.
hunyuan-video train configs/dit_tiny_shift.json
python bench/tiny_sweep.py --cfg 3 5 7 --videos 40

# 6. Quality on 100 held-out captions, and the contact sheet (results go to BENCHMARKS.md by hand).
python bench/tiny_quality.py --out outputs/tiny_quality --videos 100
