"""The HunyuanVideo diffusion transformer (official `HYVideoDiffusionTransformer`), weight for weight.

Video tokens and refined text tokens first run through dual-stream blocks (separate weights per stream, joint
attention), then, concatenated, through single-stream blocks; the final layer maps video tokens back to latent
patches. Everything is modulated by one vector per sample: timestep + pooled CLIP text (+ guidance).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from hunyuan_video.config import TransformerConfig
from hunyuan_video.models.attention import Padding, attention, drop_text_padding, make_padding
from hunyuan_video.models.layers import (
    MLP,
    FinalLayer,
    MLPEmbedder,
    Modulation,
    PatchEmbed,
    RMSNorm,
    TimestepEmbedder,
    gated_residual,
    modulate,
)
from hunyuan_video.models.rope import apply_rope, rope_tables, with_text_rows
from hunyuan_video.models.token_refiner import SingleTokenRefiner

Rope = tuple[Tensor, Tensor]


def _qk_norm(config: TransformerConfig) -> nn.Module:
    return RMSNorm(config.hidden_size // config.heads_num) if config.qk_norm else nn.Identity()


class MMDoubleStreamBlock(nn.Module):
    """Video and text streams with their own modulation, QKV, MLP; one attention over both."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        hidden, mlp_hidden, bias = config.hidden_size, int(config.hidden_size * config.mlp_width_ratio), config.qkv_bias
        self.heads_num = config.heads_num

        self.img_mod = Modulation(hidden, 6)
        self.img_norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.img_attn_qkv = nn.Linear(hidden, 3 * hidden, bias=bias)
        self.img_attn_q_norm = _qk_norm(config)
        self.img_attn_k_norm = _qk_norm(config)
        self.img_attn_proj = nn.Linear(hidden, hidden, bias=bias)
        self.img_norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.img_mlp = MLP(hidden, mlp_hidden, nn.GELU(approximate="tanh"))

        self.txt_mod = Modulation(hidden, 6)
        self.txt_norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.txt_attn_qkv = nn.Linear(hidden, 3 * hidden, bias=bias)
        self.txt_attn_q_norm = _qk_norm(config)
        self.txt_attn_k_norm = _qk_norm(config)
        self.txt_attn_proj = nn.Linear(hidden, hidden, bias=bias)
        self.txt_norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.txt_mlp = MLP(hidden, mlp_hidden, nn.GELU(approximate="tanh"))

    def forward(self, img: Tensor, txt: Tensor, vec: Tensor, rope: Rope, padding: Padding | None
                ) -> tuple[Tensor, Tensor]:
        img_shift1, img_scale1, img_gate1, img_shift2, img_scale2, img_gate2 = self.img_mod(vec)
        txt_shift1, txt_scale1, txt_gate1, txt_shift2, txt_scale2, txt_gate2 = self.txt_mod(vec)

        img_qkv = self.img_attn_qkv(modulate(self.img_norm1(img), img_shift1, img_scale1))
        img_q, img_k, img_v = img_qkv.unflatten(-1, (3, self.heads_num, -1)).unbind(2)
        txt_qkv = self.txt_attn_qkv(modulate(self.txt_norm1(txt), txt_shift1, txt_scale1))
        txt_q, txt_k, txt_v = txt_qkv.unflatten(-1, (3, self.heads_num, -1)).unbind(2)

        q = apply_rope(torch.cat([self.img_attn_q_norm(img_q), self.txt_attn_q_norm(txt_q)], dim=1), *rope)
        k = apply_rope(torch.cat([self.img_attn_k_norm(img_k), self.txt_attn_k_norm(txt_k)], dim=1), *rope)
        v = torch.cat([img_v, txt_v], dim=1)
        img_attn, txt_attn = attention(q, k, v, padding).split([img.shape[1], txt.shape[1]], dim=1)

        img = gated_residual(img, img_gate1, self.img_attn_proj(img_attn))
        img = gated_residual(img, img_gate2, self.img_mlp(modulate(self.img_norm2(img), img_shift2, img_scale2)))
        txt = gated_residual(txt, txt_gate1, self.txt_attn_proj(txt_attn))
        txt = gated_residual(txt, txt_gate2, self.txt_mlp(modulate(self.txt_norm2(txt), txt_shift2, txt_scale2)))
        return img, txt


class MMSingleStreamBlock(nn.Module):
    """One stream over [video, text]: a single linear gives QKV and the MLP input, another merges both outputs."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        hidden, mlp_hidden = config.hidden_size, int(config.hidden_size * config.mlp_width_ratio)
        self.heads_num = config.heads_num
        self.split_sizes = [3 * hidden, mlp_hidden]

        self.linear1 = nn.Linear(hidden, 3 * hidden + mlp_hidden)
        self.linear2 = nn.Linear(hidden + mlp_hidden, hidden)
        self.q_norm = _qk_norm(config)
        self.k_norm = _qk_norm(config)
        self.pre_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(hidden, 3)

    def forward(self, x: Tensor, vec: Tensor, rope: Rope, padding: Padding | None) -> Tensor:
        shift, scale, gate = self.modulation(vec)
        qkv, mlp = self.linear1(modulate(self.pre_norm(x), shift, scale)).split(self.split_sizes, dim=-1)
        q, k, v = qkv.unflatten(-1, (3, self.heads_num, -1)).unbind(2)
        q, k = apply_rope(self.q_norm(q), *rope), apply_rope(self.k_norm(k), *rope)
        out = self.linear2(torch.cat([attention(q, k, v, padding), self.mlp_act(mlp)], dim=-1))
        return gated_residual(x, gate, out)


class HunyuanVideoTransformer(nn.Module):
    """Predicts the flow-matching velocity of video latents given text conditioning.

    Set `gradient_checkpointing = True` to recompute each block in the backward pass.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.img_in = PatchEmbed(config.patch_size, config.in_channels, hidden)
        self.txt_in = SingleTokenRefiner(config.text_states_dim, hidden, config.heads_num, config.refiner_depth)
        self.time_in = TimestepEmbedder(hidden)
        self.vector_in = MLPEmbedder(config.text_states_dim_2, hidden)
        self.guidance_in = TimestepEmbedder(hidden) if config.guidance_embed else None
        self.double_blocks = nn.ModuleList(MMDoubleStreamBlock(config) for _ in range(config.mm_double_blocks_depth))
        self.single_blocks = nn.ModuleList(MMSingleStreamBlock(config) for _ in range(config.mm_single_blocks_depth))
        self.final_layer = FinalLayer(hidden, config.patch_size, config.out_channels)
        self.gradient_checkpointing = False
        self._rope_cache: dict[tuple, Rope] = {}

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        text_states: Tensor,
        text_mask: Tensor | None,
        text_states_2: Tensor,
        guidance: Tensor | None = None,
    ) -> Tensor:
        """Velocity (B, out_channels, T, H, W) of latents `x` (B, in_channels, T, H, W).

        `t` (B,): timesteps on the 0..1000 scale. `text_states` (B, L, text_states_dim): LLM states, right-padded;
        `text_mask` (B, L): 1 = real token, 0 = padding (None: no padding; keep it on the CPU so that padding
        columns are dropped without a device sync). `text_states_2` (B, text_states_dim_2): pooled CLIP states.
        `guidance` (B,): embedded guidance scale times 1000, for `guidance_embed` models only.
        """
        self._check_inputs(x, t, text_states, text_states_2, guidance)
        text_states, text_mask = drop_text_padding(text_states, text_mask)
        pt, ph, pw = self.config.patch_size
        grid = (x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw)

        vec = self.time_in(t) + self.vector_in(text_states_2)
        if self.guidance_in is not None:
            vec = vec + self.guidance_in(guidance)
        img = self.img_in(x)
        txt_padding = None if text_mask is None else make_padding(text_mask, 0)
        txt = self.txt_in(text_states, t, text_mask, txt_padding)

        padding = None if text_mask is None else make_padding(text_mask, img.shape[1])
        rope = self.rope(grid, txt.shape[1], x.device)
        for block in self.double_blocks:
            img, txt = self._run(block, img, txt, vec, rope, padding)
        joint = torch.cat([img, txt], dim=1)
        for block in self.single_blocks:
            joint = self._run(block, joint, vec, rope, padding)
        img = self.final_layer(joint[:, : img.shape[1]], vec)
        return self.unpatchify(img, grid)

    def rope(self, grid: tuple[int, int, int], text_len: int, device: torch.device) -> Rope:
        """The RoPE tables of a latent token grid followed by `text_len` text tokens. The grid's tables are cached
        per shape in eager mode; under torch.compile they are computed in the graph (a cache costs a recompile)."""
        c = self.config
        if torch.compiler.is_compiling():
            return with_text_rows(*rope_tables(grid, c.rope_dim_list, c.rope_theta, device), text_len)
        key = (grid, device)
        if key not in self._rope_cache:
            self._rope_cache[key] = rope_tables(grid, c.rope_dim_list, c.rope_theta, device)
        return with_text_rows(*self._rope_cache[key], text_len)

    def unpatchify(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """Tokens (B, T*H*W, C*pt*ph*pw) -> latents (B, C, T*pt, H*ph, W*pw)."""
        (t, h, w), (pt, ph, pw), c = grid, self.config.patch_size, self.config.out_channels
        x = x.reshape(x.shape[0], t, h, w, c, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return x.reshape(x.shape[0], c, t * pt, h * ph, w * pw)

    def _run(self, block: nn.Module, *args):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _check_inputs(self, x: Tensor, t: Tensor, text_states: Tensor, text_states_2: Tensor,
                      guidance: Tensor | None) -> None:
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise ValueError(f"x must be (B, {c.in_channels}, T, H, W) latents, got {tuple(x.shape)}")
        if any(size % p for size, p in zip(x.shape[2:], c.patch_size)):
            raise ValueError(f"latent size {tuple(x.shape[2:])} must be divisible by the patch size {c.patch_size}")
        b = x.shape[0]
        if t.shape != (b,):
            raise ValueError(f"t must have shape ({b},), got {tuple(t.shape)}; expand a scalar with t.expand({b})")
        if text_states.ndim != 3 or text_states.shape[0] != b or text_states.shape[2] != c.text_states_dim:
            raise ValueError(f"text_states must be ({b}, L, {c.text_states_dim}), got {tuple(text_states.shape)}")
        if text_states_2.shape != (b, c.text_states_dim_2):
            raise ValueError(f"text_states_2 must be ({b}, {c.text_states_dim_2}), got {tuple(text_states_2.shape)}")
        if c.guidance_embed and (guidance is None or guidance.shape != (b,)):
            raise ValueError(f"this model embeds guidance: pass guidance of shape ({b},) (scale * 1000)")
        if not c.guidance_embed and guidance is not None:
            raise ValueError("this model has no guidance embedding (guidance_embed=False): pass guidance=None")
