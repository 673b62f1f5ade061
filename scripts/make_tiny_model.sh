#!/usr/bin/env bash
# Rebuild the embedded tiny model (hunyuan_video/assets/tiny) from scratch with this package's own trainers, then
# measure it. Run from the repository root; about 12 hours on a 2-core CPU. One intra-op thread per process while
# two jobs share the 2 cores (more threads only add contention); the last transformer runs, alone, take two.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TINY=hunyuan_video/assets/tiny
MODEL=$TINY/hunyuan-video-t2v-720p

# 1. The synthetic world (seed 0): 800 clips of 33x64x64 for the VAE, 32 held-out ones to validate it on, and 4000
#    clips of 17x64x64 for the transformer. The test split's (colour, shape, motion) combinations never appear in
#    training; the transformer is measured on them in step 6.
hunyuan-video data synth data_cache/vae_train --clips 800 --seed 0 --size 64 --frames 33
hunyuan-video data synth data_cache/vae_val --clips 32 --seed 0 --split test --size 64 --frames 17
hunyuan-video data synth data_cache/tiny_dit_4000 --clips 4000 --seed 0 --size 64 --frames 17
hunyuan-video data synth data_cache/tiny_dit_20000 --clips 20000 --seed 0 --size 64 --frames 17  # its first 4000 are those

# 2. The VAE's encoder (hence the latent space), in four runs: (a) configs/vae_tiny.json from scratch (~38 min; the
#    shipped model stopped at step 3500: the config's last 250 steps are ~5 s each); (b) a decoder-only fine-tune of
#    it (~25 min); (c) a full fine-tune mostly on 32x32 crops (~70 min); (d) decoder only, 32x32 crops (~20 min).
hunyuan-video train-vae configs/vae_tiny.json --max-steps 3500
hunyuan-video train-vae configs/vae_tiny_decoder.json
hunyuan-video train-vae configs/vae_tiny_ft.json
hunyuan-video train-vae configs/vae_tiny_ft_decoder.json
mkdir -p "$MODEL/vae" && cp runs/vae_tiny_ft_decoder/vae/config.json runs/vae_tiny_ft_decoder/vae/model.safetensors "$MODEL/vae/"

# 3. The text encoders (~3 min): a 4-layer Llama (untied embeddings) pretrained as a language model on 4000 train
#    captions in the video template plus a words-so-far loss at the layer the transformer reads, and a 2-layer CLIP
#    text model trained to tell which words each object of a caption holds (until session 13: which words it holds).
python -m hunyuan_video.tiny.text_encoders "$TINY" --captions 4000 --world-seed 0 --seed 0

# 4. VAE latents (as videos 17x64x64 and as first-frame images 1x64x64) and text states, encoded once (~15 min).
hunyuan-video cache configs/dit_tiny.json

# 5. The transformer from scratch (configs/dit_tiny.json: 100 image steps, then 8400 of video mixed with images,
#    ~70 min), then 4000 more steps at lr 3e-4 (configs/dit_tiny_more.json, ~25 min), then 24000 more at lr 3e-4
#    (configs/dit_tiny_long.json, ~95 min with two threads: alone on the machine, two threads train 1.8x faster than
#    one), then 20000 steps over 20000 clips (configs/dit_tiny_20k.json, its own cache, ~23 + 80 min with two
#    threads), then deepened from 2 + 3 to 4 + 6 blocks (grow_depth: the copies start with zeroed gates, the same
#    function) and trained 9000 steps (configs/dit_tiny_deep.json, ~75 min), then 9000 more at lr 2e-4
#    (configs/dit_tiny_deep_more.json, ~85 min), exported to $MODEL/transformers/. Beside the first transformer run,
#    the VAE's last run: decoder only on 32x32 crops of 17-frame clips (configs/vae_tiny_decoder_long.json, ~70 min);
#    the encoder stays, so the cached latents stay valid.
hunyuan-video train-vae configs/vae_tiny_decoder_long.json > runs/vae_tiny_decoder_long.log 2>&1 &
hunyuan-video train configs/dit_tiny.json
wait
hunyuan-video train configs/dit_tiny_more.json
OMP_NUM_THREADS=2 hunyuan-video train configs/dit_tiny_long.json
OMP_NUM_THREADS=2 hunyuan-video cache configs/dit_tiny_20k.json
OMP_NUM_THREADS=2 hunyuan-video train configs/dit_tiny_20k.json
OMP_NUM_THREADS=2 hunyuan-video train configs/dit_tiny_deep.json
OMP_NUM_THREADS=2 hunyuan-video train configs/dit_tiny_deep_more.json
# The VAE widened 2x (grow_width; the same function at step 0) and its decoder trained again on the 20000 clips
# (configs/vae_tiny_wide.json, ~35 min with two threads); the encoder stays, so the transformer's latents do too.
OMP_NUM_THREADS=2 hunyuan-video train-vae configs/vae_tiny_wide.json
cp runs/vae_tiny_wide/vae/config.json runs/vae_tiny_wide/vae/model.safetensors "$MODEL/vae/"
# Its decoder trained on from there (configs/vae_tiny_wide_more.json, ~40 min with two threads).
OMP_NUM_THREADS=2 hunyuan-video train-vae configs/vae_tiny_wide_more.json
cp runs/vae_tiny_wide_more/vae/config.json runs/vae_tiny_wide_more/vae/model.safetensors "$MODEL/vae/"
# And once more at half the learning rate (configs/vae_tiny_wide_more2.json, ~86 min with one thread beside the
# transformer run below).
hunyuan-video train-vae configs/vae_tiny_wide_more2.json
cp runs/vae_tiny_wide_more2/vae/config.json runs/vae_tiny_wide_more2/vae/model.safetensors "$MODEL/vae/"
# The CLIP rebound (session 13): pretrained on a bag of the caption's words (step 3's objective until then), its pooled
# vector could not say which object moves which way, and the transformer reads its caption mostly through that vector.
# Fine-tuned to tell which words each object holds (~1 min; one-object captions keep their old pooled vectors), the
# cached captions of the first 8000 clips encoded again (the latents stay), and the transformer fine-tuned on them
# (configs/dit_tiny_bind.json, 4000 steps, ~50 min with one thread beside another job; exported to $MODEL). Step 3
# now pretrains the per-object objective from the start, so on a rebuild from scratch this step changes little.
python -m hunyuan_video.tiny.text_encoders runs/clip_bind --rebind-clip "$TINY/text_encoder_2" --clip-steps 1500 --lr 1e-3
hunyuan-video data synth data_cache/tiny_dit_8000 --clips 8000 --seed 0 --size 64 --frames 17  # = the first 8000 of the 20000
hunyuan-video cache configs/dit_tiny_bind.json
hunyuan-video train configs/dit_tiny_bind.json
cp runs/clip_bind/text_encoder_2/model.safetensors "$TINY/text_encoder_2/"
# The decoder once more, on whole 64x64 clips rather than 32x32 crops (session 14, configs/vae_tiny_wide_more3.json,
# ~80 min with one thread beside the run below, then configs/vae_tiny_wide_more4.json, ~50 min): 29.6 -> 30.5 ->
# 30.7 dB held-out; the transformer is unchanged.
hunyuan-video train-vae configs/vae_tiny_wide_more3.json
cp runs/vae_tiny_wide_more3/vae/config.json runs/vae_tiny_wide_more3/vae/model.safetensors "$MODEL/vae/"
hunyuan-video train-vae configs/vae_tiny_wide_more4.json
cp runs/vae_tiny_wide_more4/vae/config.json runs/vae_tiny_wide_more4/vae/model.safetensors "$MODEL/vae/"
# The decoder widened 2x alone (session 15, configs/vae_tiny_wide2.json: "grow_part": "decoder", decoder 64,64,128,128;
# ~95 min with two threads), then the encoder's new channels of vae_tiny_wide.json, frozen and dead since, dropped
# (narrow_vae_encoder, exact): 30.7 -> 31.2 dB held-out; the encoder, its latents and the transformer are unchanged.
hunyuan-video train-vae configs/vae_tiny_wide2.json
python -c "from hunyuan_video.checkpoint import load_vae; from hunyuan_video.tiny.grow import narrow_vae_encoder
from hunyuan_video.train.vae import export_vae
export_vae(narrow_vae_encoder(load_vae('runs/vae_tiny_wide2/vae'), [16, 16, 32, 32]), '$MODEL/vae')"
# More steps for that decoder (session 16, configs/vae_tiny_wide2_more.json, init_from $MODEL/vae; ~125 min with two
# threads alone): 31.2 -> 31.6 dB held-out; the encoder and the transformer are unchanged.
hunyuan-video train-vae configs/vae_tiny_wide2_more.json
cp runs/vae_tiny_wide2_more/vae/config.json runs/vae_tiny_wide2_more/vae/model.safetensors "$MODEL/vae/"
# The encoder alone trained (session 17, configs/vae_tiny_enc.json: "train_decoder": false, latents anchored to the
# shipped ones, init_from $MODEL/vae; ~50 min with two threads alone): 31.6 -> 31.75 dB held-out; the decoder, and so
# every video the transformer makes, is bit for bit the same.
hunyuan-video train-vae configs/vae_tiny_enc.json
cp runs/vae_tiny_enc/vae/config.json runs/vae_tiny_enc/vae/model.safetensors "$MODEL/vae/"
# The encoder alone on (session 18, configs/vae_tiny_enc2.json, init_from $MODEL/vae; ~100 min with two threads
# alone): 31.75 -> 31.83 dB held-out; again the decoder and every video the transformer makes stay bit for bit.
hunyuan-video train-vae configs/vae_tiny_enc2.json
cp runs/vae_tiny_enc2/vae/config.json runs/vae_tiny_enc2/vae/model.safetensors "$MODEL/vae/"
# The encoder widened 2x and trained alone (session 19, configs/vae_tiny_encw2.json: "grow_part": "encoder", the same
# latents at step 0, lr 5e-5, init_from $MODEL/vae; ~60 min with two threads alone): 31.83 -> 31.87 dB held-out; the
# decoder and every video the transformer makes stay bit for bit.
hunyuan-video train-vae configs/vae_tiny_encw2.json
cp runs/vae_tiny_encw2/vae/config.json runs/vae_tiny_encw2/vae/model.safetensors "$MODEL/vae/"
# That encoder trained on alone (session 20, configs/vae_tiny_encw3.json: 3000 more steps at lr 5e-5, its latents
# anchored at 0.02, init_from $MODEL/vae; ~100 min with two threads alone): 31.87 -> 32.06 dB held-out; the decoder and
# every video the transformer makes stay bit for bit.
hunyuan-video train-vae configs/vae_tiny_encw3.json
cp runs/vae_tiny_encw3/vae/config.json runs/vae_tiny_encw3/vae/model.safetensors "$MODEL/vae/"
# Measured beside it and not kept (BENCHMARKS.md): 3000 more clips, all with two objects, drawn twice as often.
# hunyuan-video data synth data_cache/tiny_dit_two --clips 3000 --first 20000 --seed 0 --size 64 --frames 17 \
#     --two-object-prob 1
# hunyuan-video cache configs/dit_tiny_two.json && hunyuan-video train configs/dit_tiny_two.json
# The CFG scale of generate.json was chosen on train-split captions.
python bench/tiny_sweep.py --cfg 2 3 5 --videos 60

# 6. Quality on 100 held-out captions, and the contact sheet (results go to BENCHMARKS.md by hand).
python bench/tiny_vae.py --val data_cache/vae_val
python bench/tiny_quality.py --out outputs/tiny_quality --videos 100
