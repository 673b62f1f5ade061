"""The token refiner: a small bidirectional transformer over the LLM states, conditioned on the timestep and the
masked mean of the text (official `SingleTokenRefiner`, the model's `txt_in`)."""

from __future__ import annotations

from torch import Tensor, nn

from hunyuan_video.models.attention import Padding, attention
from hunyuan_video.models.layers import MLP, TextProjection, TimestepEmbedder, gated_residual


class IndividualTokenRefinerBlock(nn.Module):
    """Pre-norm self-attention and SiLU MLP, each with a gate from the conditioning vector."""

    def __init__(self, hidden_size: int, heads_num: int, mlp_width_ratio: float):
        super().__init__()
        self.heads_num = heads_num
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.self_attn_qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.self_attn_proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.mlp = MLP(hidden_size, int(hidden_size * mlp_width_ratio), nn.SiLU())
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor, padding: Padding | None, backend: str = "auto") -> Tensor:
        gate_msa, gate_mlp = self.adaLN_modulation(c).unsqueeze(1).chunk(2, dim=-1)
        q, k, v = self.self_attn_qkv(self.norm1(x)).unflatten(-1, (3, self.heads_num, -1)).unbind(2)
        x = gated_residual(x, gate_msa, self.self_attn_proj(attention(q, k, v, padding, backend)))
        return gated_residual(x, gate_mlp, self.mlp(self.norm2(x)))


class IndividualTokenRefiner(nn.Module):
    """A stack of refiner blocks."""

    def __init__(self, hidden_size: int, heads_num: int, depth: int, mlp_width_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            IndividualTokenRefinerBlock(hidden_size, heads_num, mlp_width_ratio) for _ in range(depth)
        )

    def forward(self, x: Tensor, c: Tensor, padding: Padding | None, backend: str = "auto") -> Tensor:
        for block in self.blocks:
            x = block(x, c, padding, backend)
        return x


class SingleTokenRefiner(nn.Module):
    """LLM states (B, L, text_states_dim) -> refined text tokens (B, L, hidden)."""

    def __init__(self, in_channels: int, hidden_size: int, heads_num: int, depth: int, mlp_width_ratio: float = 4.0):
        super().__init__()
        self.input_embedder = nn.Linear(in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.c_embedder = TextProjection(in_channels, hidden_size)
        self.individual_token_refiner = IndividualTokenRefiner(hidden_size, heads_num, depth, mlp_width_ratio)

    def forward(self, x: Tensor, t: Tensor, text_mask: Tensor | None, padding: Padding | None,
                backend: str = "auto") -> Tensor:
        """`text_mask` (B, L) marks real tokens (None: all real); `padding` is its attention layout; `backend` the
        attention kernel's name."""
        if text_mask is None:
            pooled = x.float().mean(dim=1)
        else:
            weights = text_mask.float().unsqueeze(-1)
            pooled = (x.float() * weights).sum(dim=1) / weights.sum(dim=1)
        c = self.t_embedder(t) + self.c_embedder(pooled.to(x.dtype))
        return self.individual_token_refiner(self.input_embedder(x), c, padding, backend)
