"""The tiny world: research tools of the embedded tiny model, apart from the product.

- `synth`: a synthetic world of captioned clips (coloured shapes that move), with a held-out split of unseen
  (colour, shape, motion) combinations, and light backgrounds for a share of its clips;
- `scenes`: pictures outside the world's templates (any colour, gradients, textures, photographs panned and zoomed)
  that teach the tiny VAE to hold any simple picture;
- `evaluate`: the yardstick of that world, which reads the colour and the motion of a video's main object;
- `text_encoders`: the tiny Llama and CLIP text encoders' pretraining on its captions, and their diagnostics
  (`binding_gap`, `swap_gap`, `state_spread`, `rebind_clip`);
- `grow`: growing a trained transformer or VAE into a wider or deeper one that computes the same function.

Nothing outside this subpackage imports it but the CLI's tiny-world commands (`hunyuan-video data synth | eval`,
`hunyuan-video tiny ...`); tests/test_import_direction.py checks that.
"""
