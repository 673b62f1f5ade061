"""The HunyuanVideo diffusion transformer (official `HYVideoDiffusionTransformer`), weight for weight.

Video tokens and refined text tokens first run through dual-stream blocks (separate weights per stream, joint
attention), then, concatenated, through single-stream blocks; the final layer maps video tokens back to latent
patches. Everything is modulated by one vector per sample: timestep + pooled CLIP text (+ guidance); the first
latent frame's video tokens may take a vector of their own (a first-frame condition, `embed(first_frame_t=...)`;
a `token_replace` image-to-video model always gives them the t = 0 vector). A `latent_concat` image-to-video
model differs only in its input channels (latent, image latent, mask).

`forward` runs three stages, each callable on its own: `embed` (inputs -> `StreamState`), `blocks`
(`StreamState` -> `StreamState`) and `head` (`StreamState` -> velocity). Attention runs on the kernel named by
`attention_backend` (see `models/attention.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from hunyuan_video.config import TransformerConfig
from hunyuan_video.memory_budget import auto_budget, chunk_for_budget
from hunyuan_video.models.attention import (
    AttentionLayout,
    attention,
    block_layout,
    check_attention_backend,
    drop_text_padding,
    make_padding,
)
from hunyuan_video.models.layers import (
    MLP,
    FinalLayer,
    MLPEmbedder,
    Modulation,
    ModulationVectors,
    PatchEmbed,
    RMSNorm,
    TimestepEmbedder,
    TokenModulation,
    linear_weight,
    over_token_chunks,
)
from hunyuan_video.models.rope import apply_rope, rope_tables, with_text_rows
from hunyuan_video.models.token_refiner import SingleTokenRefiner

Rope = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class StreamState:
    """What travels between the stages `embed` -> `blocks` -> `head`.

    Every block attends over [video tokens | text tokens] per sample (text right-padded, see `models/attention.py`):
    `rope` holds one row per position of that sequence and `padding` where each sample's real tokens end (None:
    all real). A sequence-parallel wrapper (`hunyuan_video.parallel`) shards `img` and the video rows of `rope` after
    `embed`, puts a `SequenceLayout` in `padding`, and gathers `img` before `head`; a step cache compares
    `HunyuanVideoTransformer.first_block_input(state)` across steps and reuses `blocks(state).img - state.img`.
    """

    img: Tensor  # (B, video tokens, hidden), t-major over `grid`
    txt: Tensor  # (B, text tokens, hidden)
    vectors: ModulationVectors  # the modulation vector(s), (B, hidden)
    rope: Rope  # (cos, sin), each (video + text tokens, 1, head_dim)
    padding: AttentionLayout  # a `Padding` (or None), a `SequenceLayout` (sharded, or run by STA), a `BlockLayouts`
    grid: tuple[int, int, int]  # video tokens per axis (T, H, W)


def _qk_norm(config: TransformerConfig) -> nn.Module:
    return RMSNorm(config.hidden_size // config.heads_num) if config.qk_norm else nn.Identity()


class MMDoubleStreamBlock(nn.Module):
    """Video and text streams with their own modulation, QKV, MLP; one attention over both."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        hidden, mlp_hidden, bias = config.hidden_size, int(config.hidden_size * config.mlp_width_ratio), config.qkv_bias
        self.heads_num = config.heads_num

        self.img_mod = Modulation(hidden, double=True)
        self.img_norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.img_attn_qkv = nn.Linear(hidden, 3 * hidden, bias=bias)
        self.img_attn_q_norm = _qk_norm(config)
        self.img_attn_k_norm = _qk_norm(config)
        self.img_attn_proj = nn.Linear(hidden, hidden, bias=bias)
        self.img_norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.img_mlp = MLP(hidden, mlp_hidden, nn.GELU(approximate="tanh"))

        self.txt_mod = Modulation(hidden, double=True)
        self.txt_norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.txt_attn_qkv = nn.Linear(hidden, 3 * hidden, bias=bias)
        self.txt_attn_q_norm = _qk_norm(config)
        self.txt_attn_k_norm = _qk_norm(config)
        self.txt_attn_proj = nn.Linear(hidden, hidden, bias=bias)
        self.txt_norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.txt_mlp = MLP(hidden, mlp_hidden, nn.GELU(approximate="tanh"))
        self.ffn_chunk: int | None = None  # tokens per chunk of the MLPs (None: all at once)

    def modulated_img(self, img: Tensor, mod: TokenModulation) -> Tensor:
        """The video tokens as they enter the video QKV: `img_norm1(img)` modulated by `mod`, the first of
        `img_mod.for_tokens(vectors)` (what a step cache such as TeaCache compares between steps)."""
        return mod.modulate(self.img_norm1(img))

    def forward(self, img: Tensor, txt: Tensor, vectors: ModulationVectors, rope: Rope, padding: AttentionLayout,
                backend: str = "auto") -> tuple[Tensor, Tensor]:
        """Video tokens (B, N, hidden) and text tokens (B, L, hidden) after one block."""
        img_mod1, img_mod2 = self.img_mod.for_tokens(vectors)
        txt_mod1, txt_mod2 = self.txt_mod(vectors.vec)

        img_qkv = self.img_attn_qkv(self.modulated_img(img, img_mod1))
        img_q, img_k, img_v = img_qkv.unflatten(-1, (3, self.heads_num, -1)).unbind(2)
        txt_qkv = self.txt_attn_qkv(txt_mod1.modulate(self.txt_norm1(txt)))
        txt_q, txt_k, txt_v = txt_qkv.unflatten(-1, (3, self.heads_num, -1)).unbind(2)

        q = apply_rope(torch.cat([self.img_attn_q_norm(img_q), self.txt_attn_q_norm(txt_q)], dim=1), *rope)
        k = apply_rope(torch.cat([self.img_attn_k_norm(img_k), self.txt_attn_k_norm(txt_k)], dim=1), *rope)
        v = torch.cat([img_v, txt_v], dim=1)
        img_attn, txt_attn = attention(q, k, v, padding, backend).split([img.shape[1], txt.shape[1]], dim=1)

        img = img_mod1.gated_residual(img, self.img_attn_proj(img_attn))
        img_mlp = over_token_chunks(self.img_mlp, self.ffn_chunk, img_mod2.modulate(self.img_norm2(img)))
        img = img_mod2.gated_residual(img, img_mlp)
        txt = txt_mod1.gated_residual(txt, self.txt_attn_proj(txt_attn))
        txt_mlp = over_token_chunks(self.txt_mlp, self.ffn_chunk, txt_mod2.modulate(self.txt_norm2(txt)))
        txt = txt_mod2.gated_residual(txt, txt_mlp)
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
        self.modulation = Modulation(hidden, double=False)
        self.ffn_chunk: int | None = None  # tokens per chunk of the MLP path (None: all at once)

    def forward(self, x: Tensor, vectors: ModulationVectors, rope: Rope, padding: AttentionLayout,
                backend: str = "auto") -> Tensor:
        """Tokens [video, text] (B, N + L, hidden) after one block.

        With `ffn_chunk` set, linear1 gives the QKV of every token first and the MLP path (linear1's MLP rows,
        the activation, linear2) then runs `ffn_chunk` tokens at a time: the same result without the
        (tokens, 3 hidden + mlp hidden) linear1 output and its activation held whole."""
        mod, _ = self.modulation.for_tokens(vectors)
        x_mod = mod.modulate(self.pre_norm(x))
        if self.ffn_chunk is None:
            qkv, mlp = self.linear1(x_mod).split(self.split_sizes, dim=-1)
        else:
            w1, b1 = linear_weight(self.linear1, x_mod.dtype).split(self.split_sizes), self.linear1.bias
            b1 = (None, None) if b1 is None else b1.split(self.split_sizes)
            qkv = F.linear(x_mod, w1[0], b1[0])
        q, k, v = qkv.unflatten(-1, (3, self.heads_num, -1)).unbind(2)
        q, k = apply_rope(self.q_norm(q), *rope), apply_rope(self.k_norm(k), *rope)
        attn = attention(q, k, v, padding, backend)
        if self.ffn_chunk is None:
            return mod.gated_residual(x, self.linear2(torch.cat([attn, self.mlp_act(mlp)], dim=-1)))
        w2 = linear_weight(self.linear2, x_mod.dtype)

        def merge(attn_part: Tensor, x_part: Tensor) -> Tensor:
            mlp_part = self.mlp_act(F.linear(x_part, w1[1], b1[1]))
            return F.linear(torch.cat([attn_part, mlp_part], dim=-1), w2, self.linear2.bias)

        return mod.gated_residual(x, over_token_chunks(merge, self.ffn_chunk, attn, x_mod))


class HunyuanVideoTransformer(nn.Module):
    """Predicts the flow-matching velocity of video latents given text conditioning.

    Set `gradient_checkpointing = True` to recompute each block in the backward pass. `attention_backend` names the
    attention kernel (default "auto"); choose it with `set_attention_backend` once the model is on its device.
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
        self.attention_backend = "auto"
        self._rope_cache: dict[tuple, Rope] = {}
        self.ffn_chunk: int | str | None = None  # what `set_ffn_chunk` was given
        self._auto_ffn_chunks: dict[tuple, int | None] = {}

    def set_attention_backend(self, name: str) -> None:
        """Run attention on backend `name`: "auto", "sdpa", "flash", "flash3", "sage" or "flex" (`models/attention.py`).

        Raises `AttentionBackendError` (a ValueError) now, before any forward, when the backend is unknown, not
        installed, or cannot run on the device and dtype of the model's parameters.
        """
        param = next(self.parameters())
        check_attention_backend(name, param.device, param.dtype)
        self.attention_backend = name

    def set_ffn_chunk(self, tokens: int | str | None) -> None:
        """Run the blocks' MLPs `tokens` tokens at a time (None: all at once); the same result, a smaller peak.

        "auto" chooses the chunk at the first forward of each input size, from `memory_budget.auto_budget` of the
        device (a share of its free memory) and the MLP's activation bytes per token (`mlp_bytes_per_token`), and
        keeps it for that size (so a compiled block sees one value across steps)."""
        if tokens != "auto" and tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int)
                                                        or tokens < 1):
            raise ValueError(f"the MLP chunk must be a positive number of tokens, got {tokens} (or 'auto')")
        self.ffn_chunk, self._auto_ffn_chunks = tokens, {}
        self._set_block_chunks(None if tokens == "auto" else tokens)

    def _set_block_chunks(self, tokens: int | None) -> None:
        for block in [*self.double_blocks, *self.single_blocks]:
            block.ffn_chunk = tokens

    def mlp_bytes_per_token(self, batch: int, element_bytes: int) -> int:
        """The bytes one token of a chunked MLP holds at its peak: in a single-stream block the MLP rows of
        linear1, their activation, the concatenation with the attention output and linear2's output, for `batch`
        samples (a double-stream block's MLP holds less)."""
        hidden = self.config.hidden_size
        mlp = int(hidden * self.config.mlp_width_ratio)
        return batch * (3 * mlp + 2 * hidden) * element_bytes

    def _choose_ffn_chunk(self, batch: int, tokens: int, dtype: torch.dtype, device: torch.device) -> None:
        """With `ffn_chunk == "auto"`: the blocks' chunk for this input size, chosen once (see `set_ffn_chunk`)."""
        key = (batch, tokens, dtype, device)
        if key not in self._auto_ffn_chunks:
            per_token = self.mlp_bytes_per_token(batch, dtype.itemsize)
            self._auto_ffn_chunks[key] = chunk_for_budget(per_token, tokens, auto_budget(device))
        self._set_block_chunks(self._auto_ffn_chunks[key])

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        text_states: Tensor,
        text_mask: Tensor | None,
        text_states_2: Tensor,
        guidance: Tensor | None = None,
    ) -> Tensor:
        """Velocity (B, out_channels, T, H, W) of latents `x` (B, in_channels, T, H, W): `head(blocks(embed(...)))`.

        `t` (B,): timesteps on the 0..1000 scale. `text_states` (B, L, text_states_dim): LLM states, right-padded;
        `text_mask` (B, L): 1 = real token, 0 = padding (None: no padding; keep it on the CPU so that padding
        columns are dropped without a device sync). `text_states_2` (B, text_states_dim_2): pooled CLIP states.
        `guidance` (B,): embedded guidance scale times 1000, for `guidance_embed` models only.
        """
        return self.head(self.blocks(self.embed(x, t, text_states, text_mask, text_states_2, guidance)))

    def embed(
        self,
        x: Tensor,
        t: Tensor,
        text_states: Tensor,
        text_mask: Tensor | None,
        text_states_2: Tensor,
        guidance: Tensor | None = None,
        first_frame_t: Tensor | None = None,
    ) -> StreamState:
        """The first stage: video patches to tokens, the text through the token refiner, the modulation vector(s),
        the RoPE tables and the padding layout of the attention sequence.

        Arguments as `forward`'s. `first_frame_t` (B,): when given, the video tokens of the first latent frame are
        modulated, in every block, by the vector of this timestep (with the same text and guidance terms) instead of
        `t`'s; text tokens and the other video tokens keep `t`'s. None (the default) adds no work, except for a
        `token_replace` image-to-video model, whose first latent frame (the clean image latent) is modulated by
        the vector of t = 0 plus the text term (the official model adds no guidance term there); the final layer
        modulates every token with `t`'s vector.
        """
        self._check_inputs(x, t, text_states, text_states_2, guidance, first_frame_t)
        text_states, text_mask = drop_text_padding(text_states, text_mask)
        pt, ph, pw = self.config.patch_size
        grid = (x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw)

        text_vec = self.vector_in(text_states_2)
        guidance_vec = None if self.guidance_in is None else self.guidance_in(guidance)
        vec = self.time_in(t) + text_vec
        if guidance_vec is not None:
            vec = vec + guidance_vec
        vectors = ModulationVectors(vec)
        if first_frame_t is not None:
            first_vec = self.time_in(first_frame_t) + text_vec
            if guidance_vec is not None:
                first_vec = first_vec + guidance_vec
            vectors = ModulationVectors(vec, first_vec, grid[1] * grid[2])
        elif self.config.i2v_condition_type == "token_replace":  # official: the t = 0 vector, no guidance term
            vectors = ModulationVectors(vec, self.time_in(torch.zeros_like(t)) + text_vec, grid[1] * grid[2])

        img = self.img_in(x)
        txt_padding = None if text_mask is None else make_padding(text_mask, 0)
        txt = self.txt_in(text_states, t, text_mask, txt_padding, self.attention_backend)
        padding = None if text_mask is None else make_padding(text_mask, img.shape[1])
        rope = self.rope(grid, txt.shape[1], x.device)
        if self.ffn_chunk == "auto":
            self._choose_ffn_chunk(img.shape[0], img.shape[1] + txt.shape[1], img.dtype, img.device)
        return StreamState(img=img, txt=txt, vectors=vectors, rope=rope, padding=padding, grid=grid)

    def blocks(self, state: StreamState, start: int = 0, stop: int | None = None) -> StreamState:
        """The second stage: the dual-stream blocks on (video, text), then the single-stream blocks on their
        concatenation; returns the state with the blocks' video and text tokens.

        `start` and `stop` run only blocks `start` .. `stop - 1` of that sequence (double blocks first, then single;
        default: all), so that `blocks(blocks(state, 0, k), k)` is `blocks(state)` (a first-block cache runs the
        first block on its own)."""
        depth = len(self.double_blocks)
        stop = depth + len(self.single_blocks) if stop is None else stop
        img, txt, backend = state.img, state.txt, self.attention_backend
        for index, block in enumerate(self.double_blocks[start:stop], start):
            img, txt = self._run(block, img, txt, state.vectors, state.rope, block_layout(state.padding, index),
                                 backend)
        singles = self.single_blocks[max(start - depth, 0):max(stop - depth, 0)]
        if len(singles):
            joint = torch.cat([img, txt], dim=1)
            for index, block in enumerate(singles, max(start, depth)):
                joint = self._run(block, joint, state.vectors, state.rope, block_layout(state.padding, index), backend)
            img, txt = joint.split([img.shape[1], txt.shape[1]], dim=1)
        return replace(state, img=img, txt=txt)

    def head(self, state: StreamState) -> Tensor:
        """The last stage: the final layer on the video tokens, unpatchified to the velocity (B, C, T, H, W)."""
        return self.unpatchify(self.final_layer(state.img, state.vectors.vec), state.grid)

    def first_block_input(self, state: StreamState) -> Tensor:
        """The first dual-stream block's modulated video input for `state` (the signal TeaCache-style step caches
        compare between denoising steps); (B, video tokens, hidden)."""
        block = self.double_blocks[0]
        return block.modulated_img(state.img, block.img_mod.for_tokens(state.vectors)[0])

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
                      guidance: Tensor | None, first_frame_t: Tensor | None) -> None:
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise ValueError(f"x must be (B, {c.in_channels}, T, H, W) latents, got {tuple(x.shape)}")
        if any(size % p for size, p in zip(x.shape[2:], c.patch_size)):
            raise ValueError(f"latent size {tuple(x.shape[2:])} must be divisible by the patch size {c.patch_size}")
        b = x.shape[0]
        if t.shape != (b,):
            raise ValueError(f"t must have shape ({b},), got {tuple(t.shape)}; expand a scalar with t.expand({b})")
        if first_frame_t is not None and c.i2v_condition_type == "token_replace":
            raise ValueError("a token_replace model modulates its first frame from t = 0: pass first_frame_t=None")
        if first_frame_t is not None and first_frame_t.shape != (b,):
            raise ValueError(f"first_frame_t must have shape ({b},), got {tuple(first_frame_t.shape)}")
        if text_states.ndim != 3 or text_states.shape[0] != b or text_states.shape[2] != c.text_states_dim:
            raise ValueError(f"text_states must be ({b}, L, {c.text_states_dim}), got {tuple(text_states.shape)}")
        if text_states_2.shape != (b, c.text_states_dim_2):
            raise ValueError(f"text_states_2 must be ({b}, {c.text_states_dim_2}), got {tuple(text_states_2.shape)}")
        if c.guidance_embed and (guidance is None or guidance.shape != (b,)):
            raise ValueError(f"this model embeds guidance: pass guidance of shape ({b},) (scale * 1000)")
        if not c.guidance_embed and guidance is not None:
            raise ValueError("this model has no guidance embedding (guidance_embed=False): pass guidance=None")
