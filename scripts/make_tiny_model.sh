#!/usr/bin/env bash
# Rebuild the embedded tiny model (hunyuan_video/assets/tiny) from scratch with this package's own trainers and the
# tiny world's tools (hunyuan_video/tiny), then measure it. Run from the repository root; about a day on a 2-core
# CPU (the times below add up to ~25 hours). One intra-op thread per process by default: two jobs share the 2 cores
# in step 5, and more threads would only add contention; a run alone on the machine trains ~1.8x faster with two
# (OMP_NUM_THREADS=2; the times marked "with two threads" were measured so). Each run writes to runs/<config name>/;
# every step that ships a part copies it into hunyuan_video/assets/tiny.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TINY=hunyuan_video/assets/tiny
MODEL=$TINY/hunyuan-video-t2v-720p

# 1. The synthetic world (seed 0): 800 clips of 33x64x64 for the VAE, 32 held-out ones to validate it on, and 4000
#    and 20000 clips of 17x64x64 for the transformer (the 20000 begin with the 4000). The test split's (colour,
#    shape, motion) combinations never appear in training; the transformer is measured on them in step 9.
hunyuan-video data synth data_cache/vae_train --clips 800 --seed 0 --size 64 --frames 33
hunyuan-video data synth data_cache/vae_val --clips 32 --seed 0 --split test --size 64 --frames 17
hunyuan-video data synth data_cache/tiny_dit_4000 --clips 4000 --seed 0 --size 64 --frames 17
hunyuan-video data synth data_cache/tiny_dit_20000 --clips 20000 --seed 0 --size 64 --frames 17

# 2. The VAE's encoder, hence the latent space, in four runs: configs/vae_tiny.json from scratch, stopped at step
#    3500 (~38 min); a decoder-only fine-tune of it (~25 min); a full fine-tune mostly on 32x32 crops (~70 min);
#    decoder only on 32x32 crops (~20 min). The result is the first shipped VAE.
hunyuan-video train-vae configs/vae_tiny.json --max-steps 3500
hunyuan-video train-vae configs/vae_tiny_decoder.json
hunyuan-video train-vae configs/vae_tiny_ft.json
hunyuan-video train-vae configs/vae_tiny_ft_decoder.json
mkdir -p "$MODEL/vae" && cp runs/vae_tiny_ft_decoder/vae/config.json runs/vae_tiny_ft_decoder/vae/model.safetensors "$MODEL/vae/"

# 3. The text encoders (~3 min): a 4-layer Llama (untied embeddings) pretrained as a language model on 4000 train
#    captions in the video template, plus a words-so-far loss at the layer the transformer reads; and a 2-layer CLIP
#    text model trained to tell which words each object of a caption holds.
python -m hunyuan_video.tiny.text_encoders "$TINY" --captions 4000 --world-seed 0 --seed 0

# 4. VAE latents (as 17x64x64 videos and as 1x64x64 first-frame images) and text states, encoded once (~15 min).
hunyuan-video cache configs/dit_tiny.json

# 5. The transformer: from scratch (configs/dit_tiny.json: 100 image steps, then 8400 of video mixed with images,
#    ~70 min); 4000 more steps at lr 3e-4 (configs/dit_tiny_more.json, ~25 min); 24000 more at lr 3e-4
#    (configs/dit_tiny_long.json, ~95 min with two threads); 20000 steps over the 20000 clips
#    (configs/dit_tiny_20k.json, with its own cache, ~23 + 80 min with two threads); deepened from 2 + 3 to 4 + 6
#    blocks (`tiny grow-transformer --depth`: the new blocks copy old ones with their gates zeroed, so the model
#    computes the same function) and trained 9000 steps (configs/dit_tiny_deep.json, ~75 min); 9000 more at lr 2e-4
#    (configs/dit_tiny_deep_more.json, ~85 min), exported to $MODEL/transformers/. Beside the first run, the VAE's
#    decoder trains on 32x32 crops of 17-frame clips (configs/vae_tiny_decoder_long.json, ~70 min); its encoder is
#    frozen, so the cached latents stay valid.
hunyuan-video train-vae configs/vae_tiny_decoder_long.json > runs/vae_tiny_decoder_long.log 2>&1 &
hunyuan-video train configs/dit_tiny.json
wait
hunyuan-video train configs/dit_tiny_more.json
OMP_NUM_THREADS=2 hunyuan-video train configs/dit_tiny_long.json
OMP_NUM_THREADS=2 hunyuan-video cache configs/dit_tiny_20k.json
OMP_NUM_THREADS=2 hunyuan-video train configs/dit_tiny_20k.json
hunyuan-video tiny grow-transformer runs/dit_tiny_20k/transformer_ema.safetensors runs/grown/dit_tiny_deep.safetensors \
    --depth 4 6
OMP_NUM_THREADS=2 hunyuan-video train configs/dit_tiny_deep.json
OMP_NUM_THREADS=2 hunyuan-video train configs/dit_tiny_deep_more.json

# 6. The VAE widened 2x (`tiny grow-vae`: block_out_channels 16,16,32,32 -> 32,32,64,64, the same function) and its
#    decoder trained on the 20000 clips (configs/vae_tiny_wide.json, ~35 min with two threads); then on from there
#    (configs/vae_tiny_wide_more.json, ~40 min with two threads) and at half the learning rate
#    (configs/vae_tiny_wide_more2.json, ~86 min). The encoder stays, so the transformer's latents do too.
hunyuan-video tiny grow-vae runs/vae_tiny_decoder_long/vae runs/grown/vae_tiny_wide --widths 32 32 64 64 --seed 0
OMP_NUM_THREADS=2 hunyuan-video train-vae configs/vae_tiny_wide.json
cp runs/vae_tiny_wide/vae/config.json runs/vae_tiny_wide/vae/model.safetensors "$MODEL/vae/"
OMP_NUM_THREADS=2 hunyuan-video train-vae configs/vae_tiny_wide_more.json
cp runs/vae_tiny_wide_more/vae/config.json runs/vae_tiny_wide_more/vae/model.safetensors "$MODEL/vae/"
hunyuan-video train-vae configs/vae_tiny_wide_more2.json
cp runs/vae_tiny_wide_more2/vae/config.json runs/vae_tiny_wide_more2/vae/model.safetensors "$MODEL/vae/"

# 7. The CLIP fine-tuned to tell which words each object holds while one-object captions keep their pooled vectors
#    (`--rebind-clip`, ~1 min; step 3 already pretrains this objective, so on a rebuild it changes little), the
#    captions of the first 8000 clips encoded again (the latents stay), and the transformer fine-tuned on them
#    (configs/dit_tiny_bind.json, 4000 steps, ~50 min; exported to $MODEL).
python -m hunyuan_video.tiny.text_encoders runs/clip_bind --rebind-clip "$TINY/text_encoder_2" --clip-steps 1500 --lr 1e-3
hunyuan-video data synth data_cache/tiny_dit_8000 --clips 8000 --seed 0 --size 64 --frames 17  # = the first 8000 of the 20000
hunyuan-video cache configs/dit_tiny_bind.json
hunyuan-video train configs/dit_tiny_bind.json
cp runs/clip_bind/text_encoder_2/model.safetensors "$TINY/text_encoder_2/"

# 8. The decoder on whole 64x64 clips rather than crops (configs/vae_tiny_wide_more3.json, ~80 min, then
#    configs/vae_tiny_wide_more4.json, ~50 min); widened 2x alone (`tiny grow-vae --part decoder`: decoder
#    64,64,128,128) and trained (configs/vae_tiny_wide2.json, ~95 min with two threads); then the encoder's channels
#    added in step 6, frozen since and feeding nothing, dropped (`tiny narrow-vae-encoder`, exact); then more steps
#    for the decoder (configs/vae_tiny_wide2_more.json, ~125 min with two threads). The encoder, its latents and the
#    transformer stay as they are.
hunyuan-video train-vae configs/vae_tiny_wide_more3.json
cp runs/vae_tiny_wide_more3/vae/config.json runs/vae_tiny_wide_more3/vae/model.safetensors "$MODEL/vae/"
hunyuan-video train-vae configs/vae_tiny_wide_more4.json
cp runs/vae_tiny_wide_more4/vae/config.json runs/vae_tiny_wide_more4/vae/model.safetensors "$MODEL/vae/"
hunyuan-video tiny grow-vae "$MODEL/vae" runs/grown/vae_tiny_wide2 --widths 64 64 128 128 --part decoder --seed 4
hunyuan-video train-vae configs/vae_tiny_wide2.json
hunyuan-video tiny narrow-vae-encoder runs/vae_tiny_wide2/vae "$MODEL/vae" --widths 16 16 32 32
hunyuan-video train-vae configs/vae_tiny_wide2_more.json
cp runs/vae_tiny_wide2_more/vae/config.json runs/vae_tiny_wide2_more/vae/model.safetensors "$MODEL/vae/"

# 9. The encoder trained alone, its latents anchored to the shipped ones so the transformer still fits them
#    (configs/vae_tiny_enc.json, ~50 min with two threads; configs/vae_tiny_enc2.json, ~100 min); widened 2x alone
#    (`tiny grow-vae --part encoder`: 32,32,64,64, the same latents) and trained at lr 5e-5
#    (configs/vae_tiny_encw2.json, ~60 min); then 3000 more steps (configs/vae_tiny_encw3.json, ~100 min). The
#    decoder, and so every video the transformer makes, stays bit for bit.
hunyuan-video train-vae configs/vae_tiny_enc.json
cp runs/vae_tiny_enc/vae/config.json runs/vae_tiny_enc/vae/model.safetensors "$MODEL/vae/"
hunyuan-video train-vae configs/vae_tiny_enc2.json
cp runs/vae_tiny_enc2/vae/config.json runs/vae_tiny_enc2/vae/model.safetensors "$MODEL/vae/"
hunyuan-video tiny grow-vae "$MODEL/vae" runs/grown/vae_tiny_encw2 --widths 32 32 64 64 --part encoder --seed 9
hunyuan-video train-vae configs/vae_tiny_encw2.json
cp runs/vae_tiny_encw2/vae/config.json runs/vae_tiny_encw2/vae/model.safetensors "$MODEL/vae/"
hunyuan-video train-vae configs/vae_tiny_encw3.json
cp runs/vae_tiny_encw3/vae/config.json runs/vae_tiny_encw3/vae/model.safetensors "$MODEL/vae/"

# Variants measured beside the shipped model (BENCHMARKS.md), not part of it: 3000 more clips, all with two
# objects, drawn twice as often; the transformer widened to hidden size 192 in 3 heads.
# hunyuan-video data synth data_cache/tiny_dit_two --clips 3000 --first 20000 --seed 0 --size 64 --frames 17 \
#     --two-object-prob 1
# hunyuan-video cache configs/dit_tiny_two.json && hunyuan-video train configs/dit_tiny_two.json
# hunyuan-video tiny grow-transformer runs/dit_tiny_deep_more/transformer_ema.safetensors \
#     runs/grown/dit_tiny_wide.safetensors --width 192 3 --seed 3 && hunyuan-video train configs/dit_tiny_wide.json
# Guidance distillation of the shipped transformer (configs/dit_tiny_distill.json: 2000 steps of batch 8 on the first
# 1200 clips, ~13 min to cache and ~35 min to train on one core); measured in BENCHMARKS.md, not shipped.
# hunyuan-video data synth data_cache/tiny_dit_1200 --clips 1200 --seed 0 --size 64 --frames 17
# hunyuan-video cache configs/dit_tiny_distill.json && hunyuan-video train configs/dit_tiny_distill.json
# The VAE fine-tuned towards pictures outside the world (light backgrounds, any colour, textures, photographs;
# configs/vae_tiny_open.json, ~20 min on the idle machine); measured in BENCHMARKS.md, not shipped.
# hunyuan-video data synth data_cache/vae_wide_train --clips 1600 --seed 0 --size 64 --frames 33 --light-prob 0.3 \
#     --scenes 0.5
# hunyuan-video train-vae configs/vae_tiny_open.json

# 9a. The TeaCache polynomial (teacache.json): the calibration prompts (the first 8 train captions) sampled at 20 and
#     50 steps (~2 min).
head -8 data_cache/tiny_dit_4000/metadata.jsonl | python -c "import json, sys; [print(json.loads(l)['caption']) for l in sys.stdin]" \
    > runs/calibration_prompts.txt
hunyuan-video calibrate-cache --prompts-file runs/calibration_prompts.txt --steps 20 50

# 9b. The sliding tile plan (sliding_tile.json): the window search on the first 3 calibration prompts, tiles of 1x2x2
#     tokens (~25 min on the shared machine).
head -3 runs/calibration_prompts.txt > runs/sta_prompts.txt
hunyuan-video calibrate-sta --prompts-file runs/sta_prompts.txt --tile 1 2 2 --full-steps 4 --tolerance 0.1

# 10. The sampling settings of generate.json, chosen on train-split captions; then the VAE on the held-out clips,
#     and the transformer on 100 held-out captions with the contact sheet (results go to BENCHMARKS.md by hand).
python bench/tiny_sweep.py --cfg 2 3 5 --videos 60
python bench/tiny_vae.py --val data_cache/vae_val
python bench/tiny_quality.py --out outputs/tiny_quality --videos 100

# 11. Two words for a new colour and shape (pink, heart), appended to both text encoders: each starts from the mean
#     embedding of the old colours or shapes; old ids and outputs stay as they are. (The example LoRA on
#     the new-concept world is step 15.)
COLOURS=red,green,blue,yellow,white,orange,purple,cyan SHAPES=circle,square,triangle,star
for e in text_encoder text_encoder_2; do
  hunyuan-video tiny add-words "$TINY/$e" "runs/words/$e" "pink=$COLOURS" "heart=$SHAPES"
  cp runs/words/$e/* "$TINY/$e/"
done
# The light backgrounds' new word for the CLIP (the Llama knows "light" from its prompt template).
hunyuan-video tiny add-words "$TINY/text_encoder_2" runs/words_light/text_encoder_2 "light=white"
cp runs/words_light/text_encoder_2/* "$TINY/text_encoder_2/"

# 12. The image-to-video model (token replace) beside the text-to-video one: hunyuan-video-i2v-720p/ and
#     text_encoder_i2v/ (seconds). The LLaVA is the tiny Llama, weight for weight, with `<image>` and the I2V
#     template's missing words appended and a seeded 2-layer CLIP vision tower at 64 px in 8 px patches (64 image
#     states, 16 after the interleave of 4), its projector scaled to a word's norm. The transformer is the
#     text-to-video one with a guidance embedding that adds nothing (the same function, the first latent frame
#     modulated from t = 0). The VAE is the text-to-video model's, through a relative link (step 14 gives the
#     image-to-video model its own). Run it after any step that changes text_encoder/ or the text-to-video
#     transformer.
I2V=$TINY/hunyuan-video-i2v-720p
hunyuan-video tiny make-llava "$TINY/text_encoder" "$TINY/text_encoder_i2v" --image-size 64 --patch-size 8 --seed 0
hunyuan-video tiny to-i2v "$MODEL/transformers/mp_rank_00_model_states.safetensors" \
    "$I2V/transformers/mp_rank_00_model_states.safetensors"
ln -sfn ../hunyuan-video-t2v-720p/vae "$I2V/vae"
# guidance: the training's embedded_guidance; cfg_scale: 2 kept colour better than 3 with motion alike (step 13's bench)
printf '{\n  "guidance": 6.0,\n  "cfg_scale": 2.0\n}\n' > "$I2V/generate.json"

# 13. The token-replace fine-tune with the first frame given (configs/dit_tiny_i2v.json: 1500 steps of batch 8, ~1 s
#     a step on one thread; the cache ~10 min) on the world's first 1000 clips, 30% of them on light backgrounds,
#     copied in, then measured on 100 held-out clips' first frames and captions.
hunyuan-video data synth data_cache/tiny_light --clips 1000 --seed 0 --size 64 --frames 17 --light-prob 0.3
hunyuan-video cache configs/dit_tiny_i2v.json
hunyuan-video train configs/dit_tiny_i2v.json
cp runs/dit_tiny_i2v/export/mp_rank_00_model_states.safetensors "$I2V/transformers/"
python bench/tiny_i2v.py --out outputs/tiny_i2v --videos 100

# 14. Light backgrounds for the image-to-video model, whose first frame is the user's picture: its own VAE, the
#     text-to-video one (encoder and decoder) fine-tuned on the world's clips, half of them on white, light gray or
#     light blue backgrounds, its latents anchored to step 9's encoder's (configs/vae_tiny_light.json, ~34 min with
#     two threads), in place of the link to the text-to-video model's VAE; then the image-to-video transformer
#     fine-tuned on its latents of the world's first 4000 clips, 30% of them on light backgrounds
#     (configs/dit_tiny_i2v_light.json, ~15 min to cache and ~13 min to train on one thread). The text-to-video model
#     keeps step 9's VAE: fine-tuned on the new VAE's latents (configs/dit_tiny_light.json), it loses 12 points of
#     colour on the world's held-out captions (BENCHMARKS.md).
hunyuan-video data synth data_cache/vae_light_train --clips 1600 --seed 0 --size 64 --frames 33 --light-prob 0.5
hunyuan-video data synth data_cache/vae_light_val --clips 32 --seed 0 --split test --size 64 --frames 17 --light-prob 1
hunyuan-video data synth data_cache/vae_wide_val --clips 32 --seed 0 --split test --size 64 --frames 17 --scenes 1
OMP_NUM_THREADS=2 hunyuan-video train-vae configs/vae_tiny_light.json
rm "$I2V/vae" && mkdir "$I2V/vae" && cp runs/vae_tiny_light/vae/config.json runs/vae_tiny_light/vae/model.safetensors "$I2V/vae/"
hunyuan-video data synth data_cache/tiny_light_4000 --clips 4000 --seed 0 --size 64 --frames 17 --light-prob 0.3
hunyuan-video cache configs/dit_tiny_i2v_light.json
hunyuan-video train configs/dit_tiny_i2v_light.json
cp runs/dit_tiny_i2v_light/export/mp_rank_00_model_states.safetensors "$I2V/transformers/"
for v in vae_val vae_light_val vae_wide_val; do python bench/tiny_vae.py --vae "$I2V/vae" --val data_cache/$v; done
python bench/tiny_i2v.py --out outputs/tiny_i2v --videos 100
python bench/tiny_i2v.py --out outputs/tiny_i2v_light --videos 100 --light-prob 1
# The text-to-video transformer on the same VAE and clips, measured, not shipped:
# hunyuan-video cache configs/dit_tiny_light.json && hunyuan-video train configs/dit_tiny_light.json
# python bench/tiny_quality.py --model FOLDER --light-prob 1    # FOLDER: the embedded one with both swapped in

# 15. The example LoRA (hunyuan_video/assets/tiny/lora/): the new-concept world (pink, heart, moving in a circle)
#     beside the default world's clips, ~3 min to cache and ~1.5 min to train; scored by bench/lora_concept.py.
hunyuan-video data synth data_cache/concept_train --clips 300 --new-concepts
hunyuan-video data synth data_cache/old_train --clips 200
hunyuan-video cache configs/lora_tiny_new_concepts.json
hunyuan-video train configs/lora_tiny_new_concepts.json
mkdir -p "$TINY/lora" && cp runs/lora_tiny_new_concepts/new_concepts.safetensors "$TINY/lora/"
python bench/lora_concept.py --lora "$TINY/lora/new_concepts.safetensors" --new-videos 60 --old-videos 100
