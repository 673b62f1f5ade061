"""Growing trained weights: a deeper or wider transformer, a wider VAE (or one side of it) and a narrowed encoder
compute the same function as what they grew from, their new parts train, and the `hunyuan-video tiny` commands
write exactly what the functions give, for a training run to start from with `init_from`."""

import pytest
import torch
import torch.nn.functional as F
from test_cache import VIDEO, make_setup
from tiny_models import tiny_transformer, tiny_vae
from torch import nn

from hunyuan_video.checkpoint import load_transformer, load_vae, read_state_dict, save_vae
from hunyuan_video.cli import main
from hunyuan_video.config import VAEConfig, config_to_dict
from hunyuan_video.tiny.grow import grow_depth, grow_vae_width, grow_width, narrow_vae_encoder
from hunyuan_video.tiny.synth import SynthConfig, generate
from hunyuan_video.train.cache import build_cache
from hunyuan_video.train.dit import DiTTrainConfig, build_transformer, train
from hunyuan_video.train.vae import VAEStage, VAETrainConfig, export_vae, load_val_clips, train_vae

TINY_VAE = {"block_out_channels": [8, 8, 8, 8], "layers_per_block": 1, "norm_num_groups": 4,
            "sample_size": 32, "sample_tsize": 16}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit")
    fields = make_setup(root)
    build_cache(DiTTrainConfig(**fields), progress=False)
    return fields


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    cfg = SynthConfig(height=48, width=48, frames=9)
    generate(root / "train", 3, seed=0, config=cfg, progress=False)
    generate(root / "val", 2, seed=0, split="test", config=cfg, progress=False)
    return root


def _vae_config(clips, out, **overrides) -> VAETrainConfig:
    """A VAE run on 16px crops of the clips, without LPIPS or GAN."""
    fields = dict(train_dir=str(clips / "train"), out_dir=str(out), vae=TINY_VAE,
                  stages=[VAEStage(steps=2, size=16, frames=5)], lpips_weight=0.0, disc_weight=0.0, lr=1e-3,
                  warmup_steps=2, log_every=1, checkpoint_every=100)
    fields.update(overrides)
    return VAETrainConfig(**fields)


def _assert_same(a: dict, b: dict) -> None:
    """Two state dicts, tensor for tensor, bit for bit."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _refused(argv: list[str], match: str, capsys) -> None:
    """The command exits non-zero with one line naming the problem (argparse's own usage errors included)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value.code) if isinstance(exit_info.value.code, str) else capsys.readouterr().err
    assert exit_info.value.code != 0 and match in message, message


def _inputs(c, gen):
    return (torch.randn(2, c.in_channels, 3, 4, 4, generator=gen), torch.tensor([300.0, 800.0]),
            torch.randn(2, 5, c.text_states_dim, generator=gen), torch.tensor([[1] * 5, [1] * 3 + [0] * 2]).bool(),
            torch.randn(2, c.text_states_dim_2, generator=gen),
            torch.tensor([4000.0, 6000.0]) if c.guidance_embed else None)


def _mean_free_layernorms(model: nn.Module) -> nn.Module:
    """Every LayerNorm without its mean subtraction (an RMS norm): the case in which `grow_width` is exact."""
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.forward = lambda x, m=m: F.rms_norm(x, m.normalized_shape, m.weight, m.eps) + (
                0.0 if m.bias is None else m.bias)
    return model


def test_grow_depth_starts_as_the_same_function_and_its_new_blocks_train(base, tmp_path, capsys):
    model = tiny_transformer(seed=5)
    double, single = len(model.double_blocks), len(model.single_blocks)
    grown = grow_depth(model, double + 2, single + 1).eval()
    assert (grown.config.mm_double_blocks_depth, grown.config.mm_single_blocks_depth) == (double + 2, single + 1)
    c = model.config
    inputs = _inputs(c, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(*inputs), grown(*inputs))  # the new blocks are exactly the identity
    new_mod = grown.single_blocks[single].modulation.linear.weight
    assert new_mod.abs().sum() > 0 and torch.equal(  # a copy of old block 0 except its gate rows
        new_mod[: 2 * c.hidden_size], model.single_blocks[0].modulation.linear.weight[: 2 * c.hidden_size])
    grown(*inputs).square().mean().backward()
    assert grown.single_blocks[single].modulation.linear.weight.grad[2 * c.hidden_size :].abs().sum() > 0
    assert grown.double_blocks[double + 1].img_mod.linear.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="only add blocks"):
        grow_depth(model, double - 1, single)

    first = DiTTrainConfig(**{**base, "out_dir": str(tmp_path / "first")})
    train(first, max_steps=1, progress=False)
    fields = {k: v for k, v in base.items() if k != "transformer"}
    weights = str(tmp_path / "first" / "transformer_ema.safetensors")
    deep = tmp_path / "deep.safetensors"
    assert main(["tiny", "grow-transformer", weights, str(deep), "--depth", "3", "4"]) == 0
    # the command writes what the function gives on the weights loaded in float32
    _assert_same(read_state_dict(deep), grow_depth(load_transformer(weights, dtype=torch.float32), 3, 4).state_dict())
    deeper = DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "deeper")}, init_from=str(deep))
    assert len(build_transformer(deeper).single_blocks) == 4
    train(deeper, max_steps=1, progress=False)
    assert load_transformer(tmp_path / "deeper" / "transformer_ema.safetensors").config.mm_double_blocks_depth == 3
    out = tmp_path / "bad.safetensors"
    for bad, match in ((["--depth", "3"], "--depth"), (["--depth", "3", "4", "5"], "unrecognized"),
                       (["--depth", "3", "x"], "invalid int"), (["--depth", "-1", "4"], "only add blocks"),
                       ([], "nothing to grow")):
        _refused(["tiny", "grow-transformer", weights, str(out), *bad], match, capsys)
    _refused(["tiny", "grow-transformer", str(tmp_path / "missing.safetensors"), str(out), "--depth", "3", "4"],
             "missing.safetensors", capsys)
    _refused(["tiny", "grow-transformer", weights, str(tmp_path / "deep.pt"), "--depth", "3", "4"], ".safetensors",
             capsys)
    assert not out.exists() and not (tmp_path / "deep.pt").exists()


def test_grow_width_keeps_the_function_up_to_layernorm_means_and_its_new_channels_train(base, tmp_path, capsys):
    model = tiny_transformer(seed=5)
    c = model.config
    inputs = _inputs(c, torch.Generator().manual_seed(0))
    grown = grow_width(model, 96, 6).eval()
    assert (grown.config.hidden_size, grown.config.heads_num) == (96, 6)
    with torch.no_grad():
        old, new = model(*inputs), grown(*inputs)
        # Only the LayerNorms' means differ; the modulation took up the variance's share (without it: ~1.5x).
        assert (new - old).norm() / old.norm() < 0.1
        # Without mean subtraction the bookkeeping of every weight must give the same function exactly.
        exact_old = _mean_free_layernorms(tiny_transformer(seed=5))(*inputs)
        exact_new = _mean_free_layernorms(grow_width(tiny_transformer(seed=5), 96, 6))(*inputs)
    torch.testing.assert_close(exact_new, exact_old, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(exact_old, old)  # the mean-free variant is a different function: the check has teeth

    grown.train()
    grown(*inputs).square().mean().backward()
    block = grown.double_blocks[0]
    assert block.img_attn_proj.weight.grad[c.hidden_size :].abs().sum() > 0  # rows writing the new channels
    assert block.img_attn_proj.weight.grad[:, c.hidden_size :].abs().sum() > 0  # the new heads into old channels
    assert grown.single_blocks[-1].linear2.weight.grad[c.hidden_size :].abs().sum() > 0
    for hidden, heads in ((72, 4), (32, 2)):  # another head size; narrower
        with pytest.raises(ValueError, match="head size"):
            grow_width(model, hidden, heads)

    first = DiTTrainConfig(**{**base, "out_dir": str(tmp_path / "first")})
    train(first, max_steps=1, progress=False)
    fields = {k: v for k, v in base.items() if k not in ("transformer", "stages", "out_dir")}
    weights = str(tmp_path / "first" / "transformer_ema.safetensors")
    wide = tmp_path / "wide.safetensors"
    assert main(["tiny", "grow-transformer", weights, str(wide), "--width", "96", "6", "--seed", "3"]) == 0
    _assert_same(read_state_dict(wide),
                 grow_width(load_transformer(weights, dtype=torch.float32), 96, 6, seed=3).state_dict())
    other_seed = grow_width(load_transformer(weights, dtype=torch.float32), 96, 6, seed=4).state_dict()
    assert any(not torch.equal(v, other_seed[k]) for k, v in read_state_dict(wide).items())  # --seed draws them
    wider = DiTTrainConfig(**fields, out_dir=str(tmp_path / "wider"), init_from=str(wide),
                           stages=[{"name": "video", "steps": 1, "batch_size": 2, "buckets": [VIDEO]}],
                           export=str(tmp_path / "export.safetensors"), export_dtype="float16")
    train(wider, progress=False)

    assert {t.dtype for t in read_state_dict(tmp_path / "export.safetensors").values()} == {torch.float16}
    exported = load_transformer(tmp_path / "export.safetensors", dtype=torch.float32)
    kept = load_transformer(tmp_path / "wider" / "transformer_ema.safetensors")
    assert exported.config.hidden_size == 96 and next(kept.parameters()).dtype == torch.float32
    with torch.no_grad():
        ref = kept(*_inputs(kept.config, torch.Generator().manual_seed(1)))
        torch.testing.assert_close(exported(*_inputs(kept.config, torch.Generator().manual_seed(1))), ref,
                                   rtol=0, atol=2e-2 * ref.abs().max().item())
    out = tmp_path / "bad.safetensors"
    _refused(["tiny", "grow-transformer", weights, str(out), "--width", "96"], "--width", capsys)
    _refused(["tiny", "grow-transformer", weights, str(out), "--width", "72", "4"], "head size", capsys)
    assert not out.exists()
    with pytest.raises(ValueError, match="export_dtype"):
        DiTTrainConfig(**{**base, "export_dtype": "int8"})


def test_grow_vae_width_is_the_same_function_and_its_new_channels_train():
    vae = tiny_vae()  # block_out_channels (16, 32, 32, 32), 8 groups, every weight random
    grown = grow_vae_width(vae, [32, 64, 64, 64], seed=1).eval()
    assert grown.config.block_out_channels == (32, 64, 64, 64) and grown.config.norm_num_groups == 16
    torch.manual_seed(0)
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).mode()
        torch.testing.assert_close(grown.encode(x).mode(), z, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(grown.decode(z), vae.decode(z), atol=1e-5, rtol=1e-4)
    grown.decode(z).square().mean().backward()
    old = vae.config.block_out_channels[0]
    assert grown.decoder.conv_out.conv.weight.grad[:, old:].abs().sum() > 0  # the new channels get gradient
    assert grown.decoder.mid_block.attentions[0].to_q.weight.grad[64 // 2 :].abs().sum() > 0


@pytest.mark.parametrize("widths", [[32, 64, 64, 32], [8, 16, 16, 16], [17, 34, 34, 34], [32, 64, 64]])
def test_grow_vae_width_rejects_what_is_not_one_factor(widths):
    with pytest.raises(ValueError, match="one factor"):
        grow_vae_width(tiny_vae(), widths)


def test_grow_vae_width_decoder_only_keeps_the_encoder_and_saves_its_own_widths(tmp_path):
    vae = tiny_vae()  # block_out_channels (16, 32, 32, 32), 8 groups
    grown = grow_vae_width(vae, [32, 64, 64, 64], seed=1, part="decoder").eval()
    c = grown.config
    assert (c.block_out_channels, c.norm_num_groups) == (vae.config.block_out_channels, 8)
    assert (c.decoder_block_out_channels, c.decoder_norm_num_groups) == ((32, 64, 64, 64), 16)
    _assert_same(grown.encoder.state_dict(), vae.encoder.state_dict())
    assert grown.decoder.conv_in.conv.weight.shape[0] == 64
    torch.manual_seed(0)
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).mode()
        torch.testing.assert_close(grown.decode(z), vae.decode(z), atol=1e-5, rtol=1e-4)
        save_vae(grown, tmp_path / "wide.safetensors")  # the decoder's widths travel with the weights
        loaded = load_vae(tmp_path / "wide.safetensors")
        assert loaded.config == grown.config
        torch.testing.assert_close(loaded.decode(z), grown.decode(z), atol=0, rtol=0)
        twice = grow_vae_width(grown, [64, 128, 128, 128], part="decoder").eval()  # a factor of its own widths
        assert twice.config.decoder_norm_num_groups == 32
        torch.testing.assert_close(twice.decode(z), vae.decode(z), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="one side at a time"):
        grow_vae_width(grown, [32, 64, 64, 64])
    with pytest.raises(ValueError, match="one factor"):
        grow_vae_width(grown, [48, 64, 64, 64], part="decoder")
    with pytest.raises(ValueError, match="decoder_block_out_channels"):
        VAEConfig(**{**config_to_dict(vae.config), "decoder_block_out_channels": [32, 64, 64]})
    with pytest.raises(ValueError, match="decoder_norm_num_groups"):
        VAEConfig(**{**config_to_dict(vae.config), "decoder_block_out_channels": [24, 48, 48, 48],
                     "decoder_norm_num_groups": 16})


def test_grow_vae_width_encoder_only_keeps_the_decoder_and_the_latents():
    vae = tiny_vae()  # block_out_channels (16, 32, 32, 32), 8 groups, every weight random
    decoder_wide = grow_vae_width(vae, [32, 64, 64, 64], seed=1, part="decoder")
    grown = grow_vae_width(decoder_wide, [32, 64, 64, 64], seed=2, part="encoder").eval()
    c = grown.config
    assert (c.block_out_channels, c.norm_num_groups) == ((32, 64, 64, 64), 16)
    assert (c.decoder_block_out_channels, c.decoder_norm_num_groups) == ((32, 64, 64, 64), 16)
    _assert_same(grown.decoder.state_dict(), decoder_wide.decoder.state_dict())
    assert grown.encoder.conv_in.conv.weight.shape[0] == 32
    torch.manual_seed(0)
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(grown.encode(x).mode(), vae.encode(x).mode(), atol=1e-5, rtol=1e-4)
    alone = grow_vae_width(vae, [32, 64, 64, 64], part="encoder")  # a VAE of one width: its decoder gets its own
    assert alone.config.decoder_block_out_channels == (16, 32, 32, 32) and alone.config.decoder_norm_num_groups == 8
    assert torch.equal(alone.decoder.conv_out.conv.weight, vae.decoder.conv_out.conv.weight)
    grown.train()
    grown.encode(x).mode().square().mean().backward()  # the new channels learn
    assert grown.encoder.conv_out.conv.weight.grad[:, 32:].abs().sum() > 0
    with pytest.raises(ValueError, match="part must be"):
        grow_vae_width(vae, [32, 64, 64, 64], part="mid")


def test_narrow_vae_encoder_undoes_a_widening_exactly_and_refuses_live_channels():
    vae = tiny_vae()  # block_out_channels (16, 32, 32, 32), 8 groups, every weight random
    grown = grow_vae_width(vae, [32, 64, 64, 64], seed=1)
    grown.decoder.conv_out.conv.weight.data.add_(0.01)  # the decoder trained on: it stays as it is
    narrow = narrow_vae_encoder(grown, [16, 32, 32, 32])
    c = narrow.config
    assert (c.block_out_channels, c.norm_num_groups) == ((16, 32, 32, 32), 8)
    assert (c.decoder_block_out_channels, c.decoder_norm_num_groups) == ((32, 64, 64, 64), 16)
    for name, value in vae.encoder.state_dict().items():  # the start's encoder, but for the attention's scale
        torch.testing.assert_close(narrow.encoder.state_dict()[name], value, atol=1e-7, rtol=1e-6)
    assert torch.equal(narrow.decoder.conv_out.conv.weight, grown.decoder.conv_out.conv.weight)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(narrow.encode(x).mode(), vae.encode(x).mode(), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="dropped channels feed"):
        narrow_vae_encoder(vae, [8, 16, 16, 16])  # a trained encoder's channels all matter
    with pytest.raises(ValueError, match="one factor"):
        narrow_vae_encoder(grown, [16, 32, 32, 16])


def test_vae_commands_write_what_the_functions_give_and_refuse_bad_input(tmp_path, capsys):
    vae = export_vae(tiny_vae(), tmp_path / "vae")  # block_out_channels (16, 32, 32, 32), 8 groups
    wide = tmp_path / "wide"
    assert main(["tiny", "grow-vae", str(vae), str(wide), "--widths", "32", "64", "64", "64", "--seed", "1"]) == 0
    _assert_same(load_vae(wide).state_dict(), grow_vae_width(load_vae(vae), [32, 64, 64, 64], seed=1).state_dict())
    decoder = tmp_path / "decoder"
    assert main(["tiny", "grow-vae", str(vae), str(decoder), "--widths", "32", "64", "64", "64", "--part", "decoder",
                 "--seed", "2"]) == 0
    expected = grow_vae_width(load_vae(vae), [32, 64, 64, 64], seed=2, part="decoder")
    assert load_vae(decoder).config == expected.config
    _assert_same(load_vae(decoder).state_dict(), expected.state_dict())
    narrow = tmp_path / "narrow"
    assert main(["tiny", "narrow-vae-encoder", str(wide), str(narrow), "--widths", "16", "32", "32", "32"]) == 0
    _assert_same(load_vae(narrow).state_dict(), narrow_vae_encoder(load_vae(wide), [16, 32, 32, 32]).state_dict())
    bad = tmp_path / "bad"
    _refused(["tiny", "grow-vae", str(vae), str(bad), "--widths", "32", "64", "64", "32"], "one factor", capsys)
    _refused(["tiny", "grow-vae", str(vae), str(bad), "--widths", "32", "64", "64", "64", "--part", "mid"],
             "invalid choice", capsys)
    _refused(["tiny", "grow-vae", str(tmp_path / "missing"), str(bad), "--widths", "32", "64", "64", "64"],
             "missing", capsys)
    _refused(["tiny", "narrow-vae-encoder", str(vae), str(bad), "--widths", "8", "16", "16", "16"],
             "dropped channels feed", capsys)
    assert not bad.exists()


def test_a_run_can_start_from_a_widened_vae(clips, tmp_path):
    base = train_vae(_vae_config(clips, tmp_path / "base", stages=[VAEStage(steps=1, size=16, frames=5)]))
    wide_start, decoder_start, encoder_start = (tmp_path / name for name in ("wide0", "decoder0", "encoder0"))
    widths = ["--widths", "16", "16", "16", "16"]
    assert main(["tiny", "grow-vae", str(base / "vae"), str(wide_start), *widths]) == 0
    wide = train_vae(_vae_config(clips, tmp_path / "wide", init_from=str(wide_start), train_encoder=False))
    before, after = load_vae(base / "vae").eval(), load_vae(wide / "vae").eval()
    assert after.config.block_out_channels == (16, 16, 16, 16) and after.config.norm_num_groups == 8
    x = load_val_clips(clips / "val", 1, 48, 5)
    with torch.no_grad():  # the encoder is frozen: the same latents, so a transformer trained on them still fits
        torch.testing.assert_close(after.encode(x).mode(), before.encode(x).mode(), atol=1e-5, rtol=1e-4)
    assert main(["tiny", "grow-vae", str(base / "vae"), str(decoder_start), *widths, "--part", "decoder"]) == 0
    decoder = train_vae(_vae_config(clips, tmp_path / "decoder", init_from=str(decoder_start), train_encoder=False))
    grown = load_vae(decoder / "vae").eval()  # from its folder's config.json
    assert grown.config.block_out_channels == (8, 8, 8, 8) and grown.config.decoder_block_out_channels == (16,) * 4
    _assert_same(grown.encoder.state_dict(), before.encoder.state_dict())  # the start's encoder, weight for weight
    assert main(["tiny", "grow-vae", str(base / "vae"), str(encoder_start), *widths, "--part", "encoder"]) == 0
    encoder = train_vae(_vae_config(clips, tmp_path / "encoder", init_from=str(encoder_start), train_decoder=False))
    wide_encoder = load_vae(encoder / "vae").eval()
    assert wide_encoder.config.block_out_channels == (16,) * 4 and wide_encoder.config.decoder_widths == (8,) * 4
    _assert_same(wide_encoder.decoder.state_dict(), before.decoder.state_dict())  # the start's decoder, bit for bit
    assert not torch.equal(wide_encoder.encoder.conv_in.conv.weight[:8], before.encoder.conv_in.conv.weight)
