"""How a run is split across processes: Ulysses x ring sequence parallelism, times two for CFG parallelism.

Checks that need no process group and no model live here, so that a launch with the wrong sizes fails before
anything loads.
"""

from __future__ import annotations

from dataclasses import dataclass


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


@dataclass(frozen=True)
class ParallelConfig:
    """`ulysses_degree` ranks exchange heads for sequence (all-to-all), `ring_degree` ranks pass key/value blocks
    around a ring, and `cfg_parallel` runs the negative and positive halves of true CFG on two rank groups.
    Their product (`world_size`) is the number of processes the run needs."""

    ulysses_degree: int = 1
    ring_degree: int = 1
    cfg_parallel: bool = False

    def __post_init__(self) -> None:
        for name in ("ulysses_degree", "ring_degree"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def sequence_degree(self) -> int:
        """How many shards the video tokens are split into: `ulysses_degree * ring_degree`."""
        return self.ulysses_degree * self.ring_degree

    @property
    def world_size(self) -> int:
        """The number of processes: `ulysses_degree * ring_degree * (2 if cfg_parallel else 1)`."""
        return self.sequence_degree * (2 if self.cfg_parallel else 1)

    def check_world_size(self, world_size: int) -> None:
        """A ValueError unless this split needs exactly `world_size` processes."""
        if self.world_size != world_size:
            cfg = " x 2 (cfg parallel)" if self.cfg_parallel else ""
            raise ValueError(f"ulysses degree {self.ulysses_degree} x ring degree {self.ring_degree}{cfg} = "
                             f"{self.world_size} processes, but this run has {world_size}: launch "
                             f"`torchrun --nproc-per-node {self.world_size}` or change the degrees")

    def check_heads(self, heads_num: int) -> None:
        """A ValueError unless `ulysses_degree` divides the transformer's `heads_num`."""
        if heads_num % self.ulysses_degree:
            raise ValueError(f"the transformer's {heads_num} heads do not split over ulysses degree "
                             f"{self.ulysses_degree}: use a ulysses degree of {_divisors(heads_num)} (and the ring "
                             "degree for the rest)")

    def check_grid(self, grid: tuple[int, int, int]) -> None:
        """A ValueError unless the video tokens of latent token grid (T, H, W) split into `sequence_degree` equal
        shards; it names the nearest latent frame counts that do."""
        parts, (t, h, w) = self.sequence_degree, grid
        if (t * h * w) % parts:
            fits = [n for n in range(1, t + parts + 1) if (n * h * w) % parts == 0]
            below = [n for n in fits if n < t]
            near = ([below[-1]] if below else []) + [n for n in fits if n > t][:1]
            frames = " or ".join(f"{n} latent frames (num_frames {4 * (n - 1) + 1})" for n in near)
            raise ValueError(f"the video's {t}x{h}x{w} = {t * h * w} tokens do not split into {parts} sequence "
                             f"shards: use {frames} with the 4x temporal VAE, or a height/width whose {h}x{w} "
                             f"tokens per frame are a multiple of {parts}")
