"""The latent cache: clips encoded once by the VAE, captions once by the text encoders, into safetensors files.

Layout of a cache folder:
```
cache.json                what built it (a fingerprint of VAE, encoders, data, buckets) and what it holds
text.safetensors          states (N, L, D), mask (N, L), pooled (N, D2) per clip, and null_* for the empty caption
FxHxW/00000.safetensors   per bucket, in shards: latent mean and std (n, C, t, h, w), already scaled, and clip (n,)
```
Training draws `x0 = mean + std * eps` (a sample of the VAE's posterior) and looks the text up by clip index, so
a clip cached in several buckets (as a video and as an image) keeps one copy of its text states.
A cache whose fingerprint differs from what the training config points at is refused with the reason. Each of a
config's `extra_data` is cached in its own folder; training reads them all as one (`read_sources`). What the cache
reads of a training config is a `CacheSpec`.

Under `torch.distributed` (`torchrun ... -m hunyuan_video cache CONFIG`) the ranks share the VAE encoding: rank r
encodes batches r, r + world, ... of each bucket (the batches one process makes, so the latents are the same bit for
bit), sends them to rank 0 and is done; rank 0 encodes the captions and writes the whole cache as one process does.

When the config's text encoder is a LLaVA folder (an image-to-video model's, see `llava_folders`), the text states are
HunyuanVideo-I2V's: each caption read by `LLaVATextEncoder` with its clip's first frame, fitted to the bucket's size as
the latents' first frame is. A text row is then one (clip, frame size), shared by the buckets of that size, and the
empty caption (caption dropout) has one row per text row, with that row's image, as the official I2V training drops
the prompt and keeps the image.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from hunyuan_video.config import config_to_dict
from hunyuan_video.data.buckets import Bucket
from hunyuan_video.data.dataset import VideoDataset
from hunyuan_video.data.manifest import read_dataset
from hunyuan_video.text_encoder import CLIPTextEncoder, LLaVATextEncoder, LLMTextEncoder
from hunyuan_video.train.common import resolve_device
from hunyuan_video.train.distributed import rank_and_world
from hunyuan_video.video_io import to_uint8

CACHE_FORMAT = 2
ENCODER_KIND = "text_encoder_kind"  # the fingerprint key of a LLaVA cache (absent from a text-only one)


class CacheSpec(Protocol):
    """What building and reading a cache needs of a training config (`train.dit.DiTTrainConfig` is one)."""

    @property
    def sources(self) -> list[tuple[str, str, float]]:
        """(dataset folder, cache folder, repeats) of each dataset."""

    @property
    def buckets(self) -> list[tuple[int, int, int]]:
        """Every bucket the cache must hold."""

    vae: str  # the VAE checkpoint or folder whose encoder makes the latents
    text_encoder: str  # the LLM folder
    text_encoder_2: str  # the CLIP folder
    text_max_length: int  # LLM tokens after the template
    device: str  # where to encode ("auto": CUDA when present)
    transformer: dict[str, Any]  # TransformerConfig fields of a fresh transformer (its image condition type)
    init_from: str | None  # or the weights it fine-tunes


def bucket_name(bucket: tuple[int, int, int]) -> str:
    """The folder name of a bucket: `FRAMESxHEIGHTxWIDTH`."""
    return "x".join(str(v) for v in bucket)


def hash_path(path: str | Path) -> str:
    """sha256 over a file, or over every file of a folder (relative names and contents, in sorted order)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        inner = hashlib.sha256()
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                inner.update(chunk)
        digest.update(inner.digest())
    return digest.hexdigest()


@dataclass
class BucketLatents:
    """The cached latents of one bucket: posterior mean and std (scaled) and the row of the text states each reads
    (the clip it came from; in a LLaVA cache, that clip's row at the bucket's frame size)."""

    mean: torch.Tensor
    std: torch.Tensor
    clip: torch.Tensor

    def __len__(self) -> int:
        return self.mean.shape[0]


@dataclass
class TextStates:
    """Cached encoder outputs per text row, plus the empty caption's (used for caption dropout): one row, or in a
    LLaVA cache one per text row (the empty caption with that row's image); `null_pooled` is always one row."""

    states: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    null_states: torch.Tensor
    null_mask: torch.Tensor
    null_pooled: torch.Tensor

    def null_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The rows of `null_states` and `null_mask` that go with the text rows `rows`."""
        return rows if self.null_states.shape[0] > 1 else torch.zeros_like(rows)


@dataclass
class LatentCache:
    """A loaded cache: latents by bucket and text states by clip; `weights` (per bucket, one per row) say how often
    each row is drawn relative to the others, uniform when None; `source` (one per text row) says which of the
    merged caches a text row came from, all 0 when None."""

    buckets: dict[tuple[int, int, int], BucketLatents]
    text: TextStates
    meta: dict[str, Any]
    weights: dict[tuple[int, int, int], torch.Tensor] | None = None
    source: torch.Tensor | None = None


def write_cache(
    cache_dir: str | Path,
    fingerprint: dict[str, Any],
    text: TextStates,
    buckets: dict[tuple[int, int, int], BucketLatents],
    shard_size: int = 1024,
) -> Path:
    """Write a cache folder; `cache.json` is written last, so a half-written cache is never read as complete."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "cache.json").unlink(missing_ok=True)
    save_file({k: v.contiguous() for k, v in vars(text).items()}, cache_dir / "text.safetensors")
    index = {}
    for bucket, latents in buckets.items():
        folder = cache_dir / bucket_name(bucket)
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.safetensors"):
            old.unlink()
        shards = []
        for i, start in enumerate(range(0, len(latents), shard_size)):
            part = {k: v[start : start + shard_size].contiguous() for k, v in vars(latents).items()}
            save_file(part, folder / f"{i:05d}.safetensors")
            shards.append(f"{bucket_name(bucket)}/{i:05d}.safetensors")
        index[bucket_name(bucket)] = {"count": len(latents), "shards": shards}
    meta = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "clips": int(text.states.shape[0]), "buckets": index}
    (cache_dir / "cache.json").write_text(json.dumps(meta, indent=2) + "\n")
    return cache_dir


def reusable_latents(
    cache_dir: str | Path, fingerprint: dict[str, Any], buckets: list[tuple[int, int, int]]
) -> dict[str, Any] | None:
    """The `cache.json` of the complete cache in `cache_dir` if its latents were built from the same VAE encoder
    and data, over the same buckets, as `fingerprint` and `buckets` ask (so only its text may be stale), else None."""
    meta_path = Path(cache_dir) / "cache.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    same = meta.get("format") == CACHE_FORMAT and all(
        meta["fingerprint"].get(k) == fingerprint.get(k) for k in ("vae", "data", ENCODER_KIND))
    return meta if same and set(meta["buckets"]) == {bucket_name(b) for b in buckets} else None


def write_text(cache_dir: str | Path, fingerprint: dict[str, Any], text: TextStates, meta: dict[str, Any]) -> Path:
    """Replace a cache's text states (its latents stay), and its fingerprint; `cache.json` is written last."""
    cache_dir = Path(cache_dir)
    if text.states.shape[0] != meta["clips"]:
        raise ValueError(f"{cache_dir} holds {meta['clips']} clips, the new text states {text.states.shape[0]}")
    (cache_dir / "cache.json").unlink()
    save_file({k: v.contiguous() for k, v in vars(text).items()}, cache_dir / "text.safetensors")
    (cache_dir / "cache.json").write_text(json.dumps({**meta, "fingerprint": fingerprint}, indent=2) + "\n")
    return cache_dir


def read_cache(
    cache_dir: str | Path, fingerprint: dict[str, Any], buckets: list[tuple[int, int, int]]
) -> LatentCache:
    """Load the `buckets` of a cache, refusing one that is missing, incomplete, built from other inputs than
    `fingerprint`, or without (samples in) some of `buckets`."""
    cache_dir = Path(cache_dir)
    meta_path = cache_dir / "cache.json"
    if not meta_path.is_file():
        raise ValueError(f"no complete latent cache in {cache_dir}: run `hunyuan-video cache CONFIG` first")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"latent cache {cache_dir} has format {meta.get('format')}, expected {CACHE_FORMAT}: "
                         "rerun `hunyuan-video cache CONFIG`")
    stale = [key for key in sorted(set(fingerprint) | set(meta["fingerprint"]))
             if fingerprint.get(key) != meta["fingerprint"].get(key)]
    if stale:
        raise ValueError(
            f"latent cache {cache_dir} is stale: {', '.join(stale)} changed since it was built; "
            "rerun `hunyuan-video cache CONFIG`"
        )
    missing = [bucket_name(b) for b in buckets if not meta["buckets"].get(bucket_name(b), {}).get("count")]
    if missing:
        raise ValueError(f"latent cache {cache_dir} has no samples in buckets {missing}: "
                         "rerun `hunyuan-video cache CONFIG` with the config that trains them")
    text = TextStates(**load_file(cache_dir / "text.safetensors"))
    latents = {}
    for bucket in buckets:
        parts = [load_file(cache_dir / shard) for shard in meta["buckets"][bucket_name(bucket)]["shards"]]
        latents[bucket] = BucketLatents(**{k: torch.cat([p[k] for p in parts]) for k in ("mean", "std", "clip")})
    return LatentCache(buckets=latents, text=text, meta=meta)


def _pad_text(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """`tensor` (N, L, ...) padded with zeros (masked out: False / 0) along L to `length`."""
    pad = tensor.new_zeros((tensor.shape[0], length - tensor.shape[1], *tensor.shape[2:]))
    return torch.cat([tensor, pad], dim=1)


def merge_caches(caches: list[LatentCache], repeats: list[float]) -> LatentCache:
    """One cache over several built with the same encoders: clip indices offset, text states padded to the longest
    caption (masked), each row of cache `i` drawn `repeats[i]` times as often as a row of a cache with 1 and its text
    rows marked as of source `i`."""
    if len(caches) != len(repeats) or not caches:
        raise ValueError(f"give one repeats value per cache, got {len(repeats)} for {len(caches)}")
    if len(caches) == 1 and repeats[0] == 1:
        return caches[0]
    longest = max(c.text.states.shape[1] for c in caches)
    nulls = caches if ENCODER_KIND in caches[0].meta["fingerprint"] else caches[:1]  # per text row, or one
    text = TextStates(
        states=torch.cat([_pad_text(c.text.states, longest) for c in caches]),
        mask=torch.cat([_pad_text(c.text.mask, longest) for c in caches]),
        pooled=torch.cat([c.text.pooled for c in caches]),
        null_states=torch.cat([_pad_text(c.text.null_states, longest) for c in nulls]),
        null_mask=torch.cat([_pad_text(c.text.null_mask, longest) for c in nulls]),
        null_pooled=caches[0].text.null_pooled,
    )
    offsets = [0]
    for c in caches[:-1]:
        offsets.append(offsets[-1] + c.text.states.shape[0])
    buckets, weights = {}, {}
    for bucket in caches[0].buckets:
        parts = [c.buckets[bucket] for c in caches]
        buckets[bucket] = BucketLatents(torch.cat([p.mean for p in parts]), torch.cat([p.std for p in parts]),
                                        torch.cat([p.clip + o for p, o in zip(parts, offsets)]))
        weights[bucket] = torch.cat([torch.full((len(p),), float(r)) for p, r in zip(parts, repeats)])
    meta = {"clips": int(text.states.shape[0]), "sources": [c.meta for c in caches]}
    source = torch.cat([torch.full((c.text.states.shape[0],), i) for i, c in enumerate(caches)])
    return LatentCache(buckets=buckets, text=text, meta=meta, weights=weights, source=source)


def read_sources(config: CacheSpec) -> LatentCache:
    """The caches of `config.data` and of every `config.extra_data`, each checked against its own fingerprint,
    merged into one (see `merge_caches`)."""
    caches = [read_cache(cache_dir, fingerprint, config.buckets)
              for (_, cache_dir, _), fingerprint in zip(config.sources, source_fingerprints(config))]
    return merge_caches(caches, [r for _, _, r in config.sources])


def vae_encoder_hash(path: str | Path) -> str:
    """sha256 of what decides the latents: the VAE config (scaling factor included) and the encoder's weights.
    A decoder-only fine-tune keeps it, so latents cached before it stay valid."""
    from hunyuan_video.checkpoint import load_vae

    vae = load_vae(path)
    digest = hashlib.sha256(json.dumps(config_to_dict(vae.config), sort_keys=True).encode())
    for key, value in sorted(vae.state_dict().items()):
        if key.startswith(("encoder.", "quant_conv.")):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def llava_folders(text_encoder: str | Path) -> tuple[Path, Path] | None:
    """The tokenizer and image processor folders of a LLaVA text encoder folder (config.json of `model_type` "llava"):
    the folder itself (official `text_encoder_i2v/`) or diffusers' `tokenizer/` and `image_processor/` beside it;
    None for a text-only encoder. A ValueError when a LLaVA folder has no image processor."""
    folder = Path(text_encoder)
    config = folder / "config.json"
    if not config.is_file() or json.loads(config.read_text()).get("model_type") != "llava":
        return None
    tokenizer = folder if (folder / "tokenizer_config.json").is_file() else folder.parent / "tokenizer"
    processor = folder if (folder / "preprocessor_config.json").is_file() else folder.parent / "image_processor"
    if not (processor / "preprocessor_config.json").is_file():
        raise ValueError(f"{folder} is a LLaVA text encoder without its image processor (preprocessor_config.json "
                         "in it, or diffusers' image_processor/ beside it)")
    return tokenizer, processor


def image_embed_interleave(config: CacheSpec) -> int:
    """The LLaVA image states kept (every n-th) for `config`'s transformer: 4 for token replace, 2 for latent concat;
    a ValueError for a text-to-video transformer."""
    from hunyuan_video.checkpoint import transformer_config_for
    from hunyuan_video.pipelines.image_to_video import IMAGE_EMBED_INTERLEAVE

    kind = (config.transformer.get("i2v_condition_type") if config.transformer or not config.init_from
            else transformer_config_for(config.init_from).i2v_condition_type)
    if kind is None:
        raise ValueError(f"the text encoder {config.text_encoder} is LLaVA (image-to-video) but the transformer is "
                         "text-to-video: use a text-only encoder folder, or an image-to-video transformer")
    return IMAGE_EMBED_INTERLEAVE[kind]


def _encoders_fingerprint(config: CacheSpec) -> dict[str, Any]:
    """The part of a cache's fingerprint that every dataset of `config` shares: VAE encoder, text encoders, length;
    for a LLaVA encoder also its kind, image interleave and its tokenizer and image processor when stored apart."""
    fingerprint = {
        "vae": vae_encoder_hash(config.vae),
        "text_encoder": hash_path(config.text_encoder),
        "text_encoder_2": hash_path(config.text_encoder_2),
        "text_max_length": config.text_max_length,
    }
    llava = llava_folders(config.text_encoder)
    if llava is not None:
        fingerprint.update({ENCODER_KIND: "llava", "image_embed_interleave": image_embed_interleave(config)})
        for name, folder in zip(("tokenizer", "image_processor"), llava):
            if folder != Path(config.text_encoder):
                fingerprint[name] = hash_path(folder)
    return fingerprint


def _dataset_hash(data: str) -> str:
    """sha256 over the samples a dataset folder lists (file, caption, size)."""
    samples, _ = read_dataset(data)
    listing = [[str(s.file), s.caption, s.frames, s.height, s.width] for s in samples]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def cache_fingerprint(config: CacheSpec, data: str | None = None) -> dict[str, Any]:
    """What a cache's contents depend on: the VAE's encoder, both text encoders, the samples of the dataset `data`
    (default `config.data`), the text length."""
    return {**_encoders_fingerprint(config), "data": _dataset_hash(data or config.data)}


def source_fingerprints(config: CacheSpec) -> list[dict[str, Any]]:
    """`cache_fingerprint` of each of `config.sources`, hashing the VAE and text encoders once."""
    encoders = _encoders_fingerprint(config)
    return [{**encoders, "data": _dataset_hash(data)} for data, _, _ in config.sources]


@torch.no_grad()
def encode_captions(
    captions: list[str], llm: LLMTextEncoder, clip: CLIPTextEncoder, batch_size: int = 64, progress: bool = True
) -> TextStates:
    """Text states of every caption and of the empty caption, cut to the longest real length among them."""
    parts = [(*llm(captions[i : i + batch_size]), clip(captions[i : i + batch_size]))
             for i in tqdm(range(0, len(captions), batch_size), desc="cache captions", disable=not progress)]
    null_states, null_mask = llm([""])
    states = torch.cat([p[0] for p in parts]).float()
    mask = torch.cat([p[1] for p in parts]).cpu()
    longest = int(torch.cat([mask, null_mask.cpu()]).sum(1).max())
    return TextStates(
        states=states[:, :longest].cpu(), mask=mask[:, :longest], pooled=torch.cat([p[2] for p in parts]).float().cpu(),
        null_states=null_states[:, :longest].float().cpu(), null_mask=null_mask[:, :longest].cpu(),
        null_pooled=clip([""]).float().cpu(),
    )


def first_frame(video: torch.Tensor) -> np.ndarray:
    """The first frame of a `(3, T, H, W)` clip in [-1, 1] as the uint8 `(H, W, 3)` image the LLaVA encoder reads."""
    return to_uint8(video[:, 0].permute(1, 2, 0).numpy())


@torch.no_grad()
def encode_with_frames(dataset: VideoDataset, buckets: list[tuple[int, int, int]], llava: LLaVATextEncoder,
                       clip: CLIPTextEncoder, batch_size: int = 8, progress: bool = True
                       ) -> tuple[TextStates, dict[tuple[int, int, int], torch.Tensor]]:
    """LLaVA text states of every (clip, frame size) that `buckets` hold: the caption with the clip's first frame
    fitted to that size, the empty caption with the same frame, CLIP's pooled caption; cut to the longest real length.
    Also the text row of each bucket's clips (in `dataset.groups` order)."""
    keys: dict[tuple[int, int, int], int] = {}
    rows = {}
    for bucket in buckets:
        group = dataset.groups[Bucket(*bucket)]
        rows[bucket] = torch.tensor([keys.setdefault((i, *bucket[1:]), len(keys)) for i in group], dtype=torch.int64)
    keys_list = list(keys)
    parts = []
    for start in tqdm(range(0, len(keys_list), batch_size), desc="cache captions", disable=not progress):
        chunk = keys_list[start : start + batch_size]
        frames = [first_frame(dataset.load(i, Bucket(1, h, w))) for i, h, w in chunk]
        captions = [dataset.samples[i].caption for i, _, _ in chunk]
        parts.append((*llava(captions, frames), *llava([""] * len(chunk), frames), clip(captions)))
    states, mask, null_states, null_mask, pooled = (torch.cat([p[k] for p in parts]).cpu() for k in range(5))
    longest = int(torch.cat([mask, null_mask]).sum(1).max())
    text = TextStates(states=states[:, :longest].float(), mask=mask[:, :longest], pooled=pooled.float(),
                      null_states=null_states[:, :longest].float(), null_mask=null_mask[:, :longest],
                      null_pooled=clip([""]).float().cpu())
    return text, rows


def build_cache(config: CacheSpec, batch_size: int = 8, progress: bool = True) -> list[Path]:
    """Encode every clip of `config.data` into its buckets of the curriculum, and every caption, once, into
    `config.cache_dir`, and each of `config.extra_data` into its own `cache_dir`, with the config's VAE and text
    encoders; returns the cache folders. A cache built from the same inputs is left as it is; one whose text
    encoders alone changed gets new text states and keeps its latents.

    Which clip goes to which bucket is `VideoDataset`'s rule (a video to its best video bucket, and its first frame
    to the image bucket); unreadable files are skipped and reported. Under `torch.distributed` every rank calls it:
    the ranks share the VAE batches of every dataset first, then rank 0 encodes the captions and writes the caches
    (see the module's docstring); the other ranks return once they have sent their latents.
    """
    sources = [(data, cache_dir, fingerprint)
               for (data, cache_dir, _), fingerprint in zip(config.sources, source_fingerprints(config))]
    encoded = [_encode_source(config, data, cache_dir, fingerprint, batch_size, progress)
               for data, cache_dir, fingerprint in sources]
    if rank_and_world()[0] == 0:
        for (_, cache_dir, fingerprint), source in zip(sources, encoded):
            _write_source(config, cache_dir, fingerprint, source, batch_size, progress)
    return [Path(cache_dir) for _, cache_dir, _ in sources]


Latents = dict[tuple[tuple[int, int, int], int], tuple[torch.Tensor, torch.Tensor]]  # (bucket, row) -> mean, std


@torch.no_grad()
def _encode_source(config: CacheSpec, data: str, cache_dir: str, fingerprint: dict[str, Any], batch_size: int,
                   progress: bool) -> tuple[dict[str, Any] | None, VideoDataset, Latents] | None:
    """What the cache of dataset `data` needs, on every rank: None when `cache_dir` is up to date, else (the meta of
    a cache whose latents stay, or None; the dataset; on rank 0 the new latents of every rank, else {})."""
    rank, world = rank_and_world()
    meta = _from_rank_0(reusable_latents(cache_dir, fingerprint, config.buckets) if rank == 0 else None)
    if meta is not None and meta["fingerprint"] == fingerprint:
        return None
    dataset = VideoDataset(data, [Bucket(*b) for b in config.buckets])
    if empty := [bucket_name(b) for b in config.buckets if not dataset.groups.get(Bucket(*b))]:
        raise ValueError(f"no sample of {data} fits buckets {empty}: change the stages")
    if meta is not None:
        return meta, dataset, {}
    latents = _encode_latents(config, dataset, batch_size, progress and rank == 0)
    if world > 1:
        shares = [None] * world if rank == 0 else None
        dist.gather_object(latents, shares, dst=0)
        latents = {k: v for share in shares or [] for k, v in share.items()}
    return None, dataset, latents


@torch.no_grad()
def _write_source(config: CacheSpec, cache_dir: str, fingerprint: dict[str, Any],
                  source: tuple[dict[str, Any] | None, VideoDataset, Latents] | None, batch_size: int,
                  progress: bool) -> None:
    """Encode the captions of one `_encode_source` result and write its cache (rank 0)."""
    if source is None:
        print(f"{cache_dir}: up to date")
        return
    meta, dataset, latents = source
    device = resolve_device(config.device)
    clip = CLIPTextEncoder.from_pretrained(config.text_encoder_2, device=device)
    llava = llava_folders(config.text_encoder)
    if llava is None:
        llm = LLMTextEncoder.from_pretrained(config.text_encoder, device=device, max_length=config.text_max_length)
        text = encode_captions([s.caption for s in dataset.samples], llm, clip, progress=progress)
        rows = {bucket: torch.tensor(dataset.groups[Bucket(*bucket)], dtype=torch.int64) for bucket in config.buckets}
    else:
        llm = LLaVATextEncoder.from_pretrained(
            config.text_encoder, llava[0], device=device, image_processor_dir=llava[1],
            max_length=config.text_max_length, image_embed_interleave=fingerprint["image_embed_interleave"])
        text, rows = encode_with_frames(dataset, config.buckets, llm, clip, batch_size, progress)
    del llm, clip
    if meta is not None:
        print(f"{cache_dir}: the VAE encoder, data and buckets are unchanged, the latents are kept; "
              "only the captions were encoded again")
        write_text(cache_dir, fingerprint, text, meta)
        return
    buckets = {}
    for bucket in config.buckets:
        group = dataset.groups[Bucket(*bucket)]
        batches = [latents[bucket, start] for start in range(0, len(group), batch_size)]
        buckets[bucket] = BucketLatents(torch.cat([m for m, _ in batches]), torch.cat([s for _, s in batches]),
                                        rows[bucket])
    if len(dataset.report):
        print(dataset.report.summary())
    write_cache(cache_dir, fingerprint, text, buckets)


def _from_rank_0(value: Any) -> Any:
    """`value` as rank 0 has it, on every rank (itself without a process group)."""
    if rank_and_world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _encode_latents(config: CacheSpec, dataset: VideoDataset, batch_size: int, progress: bool) -> Latents:
    """This rank's share of the VAE encoding: batches r, r + world, ... of `batch_size` clips of each bucket, as
    (bucket, first row) -> the scaled posterior (mean, std), on the CPU."""
    from hunyuan_video.checkpoint import load_vae

    rank, world = rank_and_world()
    device = resolve_device(config.device)
    vae = load_vae(config.vae, dtype=torch.float32, device=device)
    scale = vae.config.scaling_factor
    latents = {}
    for bucket in config.buckets:
        group = dataset.groups[Bucket(*bucket)]
        for start in tqdm(range(0, len(group), batch_size)[rank::world], desc=f"cache {bucket_name(bucket)}",
                          disable=not progress):
            video = torch.stack([dataset.load(i, Bucket(*bucket)) for i in group[start : start + batch_size]])
            posterior = vae.encode(video.to(device))
            latents[bucket, start] = ((posterior.mean * scale).cpu(), (posterior.std * scale).cpu())
    return latents
