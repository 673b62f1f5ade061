"""Clips from outside the synthetic world's templates, for teaching the tiny VAE to hold any simple picture.

A user's first frame (image-to-video) can be any picture; the default world only shows dark or grey backgrounds.
This module draws, beside the world's own clips, scenes of four kinds:
- `plain`: a background of any colour with light pixel noise;
- `gradient`: between two colours of any hue, in any direction;
- `texture`: smooth random noise at a random scale, in two colours, drifting;
- `photo`: a natural photograph (the ones scikit-image ships) panned and zoomed over the clip.
Each scene carries 0 to 2 of the world's shapes (the new-concept heart included) in colours of any hue, on the
world's paths. The photographs are split: `TEST_PHOTOS` never appear in the train split, so the test split measures
pictures the VAE has not seen. `generate_mixed` mixes them with the world's own clips (and their light backgrounds)
in one folder, which trains the VAE on both.

Each clip is a pure function of (seed, split, index), as in `hunyuan_video.tiny.synth`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hunyuan_video.tiny.synth import (
    MOTIONS,
    NEW_SHAPES,
    SHAPES,
    SPLITS,
    SynthConfig,
    SynthObject,
    draw_objects,
    manifest_row,
    random_object,
    render_clip,
    sample_clip,
)

KINDS = ("plain", "gradient", "texture", "photo")
# scikit-image's bundled pictures (files in skimage/data), colour and grey; the test split's are never trained on.
TRAIN_PHOTOS = ("astronaut.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "color.png",
                "camera.png", "brick.png", "grass.png", "gravel.png", "moon.png", "page.png", "text.png")
TEST_PHOTOS = ("chelsea.png", "coins.png", "motorcycle_left.png", "retina.jpg")
ZOOM = (1.0, 1.6)  # how much a photograph's crop may shrink or grow over a clip
PAN = 0.3  # how far (fraction of the crop) it may travel


def photo_folder() -> Path:
    """Where scikit-image keeps its bundled pictures (an ImportError naming the package when it is missing)."""
    try:
        import skimage.data
    except ImportError:
        raise ImportError("the scenes' photographs come with scikit-image: pip install scikit-image") from None
    return Path(skimage.data.__file__).parent


@functools.cache
def load_photo(name: str) -> Image.Image:
    """One bundled picture as an RGB image."""
    with Image.open(photo_folder() / name) as image:
        return image.convert("RGB")


def _random_rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _plain(rng: np.random.Generator, height: int, width: int, frames: int) -> list[np.ndarray]:
    colour = np.array(_random_rgb(rng), dtype=np.float32)
    noise = rng.uniform(0, 8)
    return [np.clip(colour + rng.normal(0, noise, (height, width, 3)), 0, 255) for _ in range(frames)]


def _gradient(rng: np.random.Generator, height: int, width: int, frames: int) -> list[np.ndarray]:
    a, b = (np.array(_random_rgb(rng), dtype=np.float32) for _ in range(2))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    w = np.cos(angle) * xs + np.sin(angle) * ys
    w = ((w - w.min()) / max(w.max() - w.min(), 1e-6))[..., None]
    image = a * (1 - w) + b * w
    return [image] * frames


def _texture(rng: np.random.Generator, height: int, width: int, frames: int) -> list[np.ndarray]:
    """Smooth noise: random values on a coarse grid (4 to 24 cells a side), upsampled bicubically, in two colours,
    drifting a random distance over the clip."""
    cells = int(rng.integers(4, 25))
    big = 2 * max(height, width)
    grid = rng.random((cells * 2, cells * 2)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid).resize((big, big), Image.Resampling.BICUBIC))
    field = (field - field.min()) / max(field.max() - field.min(), 1e-6)
    a, b = (np.array(_random_rgb(rng), dtype=np.float32) for _ in range(2))
    dy, dx = rng.uniform(-0.5, 0.5, 2) * np.array([height, width])
    y0, x0 = rng.uniform(0, big - height - abs(dy)), rng.uniform(0, big - width - abs(dx))
    y0, x0 = y0 + max(-dy, 0), x0 + max(-dx, 0)
    out = []
    for t in np.linspace(0, 1, frames):
        y, x = int(round(y0 + dy * t)), int(round(x0 + dx * t))
        w = field[y:y + height, x:x + width, None]
        out.append(a * (1 - w) + b * w)
    return out


def _photo(rng: np.random.Generator, height: int, width: int, frames: int, photos: tuple[str, ...]
           ) -> tuple[list[np.ndarray], str]:
    """A photograph's crop moving and zooming over the clip: two boxes of the clip's aspect inside the picture,
    the frames in between interpolated."""
    name = str(rng.choice(photos))
    photo = load_photo(name)
    pw, ph = photo.size
    most = min(pw / width, ph / height)  # the largest crop scale that fits
    scale0 = rng.uniform(0.25, 0.8) * most
    scale1 = float(np.clip(scale0 * rng.uniform(1 / ZOOM[1], ZOOM[1]), 0.2 * most, most))
    boxes = []
    for scale in (scale0, scale1):
        w, h = width * scale, height * scale
        boxes.append([rng.uniform(0, pw - w), rng.uniform(0, ph - h), w, h])
    (x0, y0, w0, h0), (x1, y1, w1, h1) = boxes
    x1 = float(np.clip(np.clip(x1, x0 - PAN * w0, x0 + PAN * w0), 0, pw - w1))
    y1 = float(np.clip(np.clip(y1, y0 - PAN * h0, y0 + PAN * h0), 0, ph - h1))
    out = []
    for t in np.linspace(0, 1, frames):
        x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
        w, h = w0 + (w1 - w0) * t, h0 + (h1 - h0) * t
        crop = photo.resize((width, height), Image.Resampling.BICUBIC, box=(x, y, x + w, y + h), reducing_gap=3.0)
        out.append(np.asarray(crop, dtype=np.float32))
    return out, name


def _objects(rng: np.random.Generator, cfg: SynthConfig) -> tuple[list[SynthObject], list[tuple[int, int, int]]]:
    """0 to 2 shapes of any colour on the world's paths (a still or moving one, any size)."""
    objects, fills = [], []
    for _ in range(int(rng.choice([0, 1, 1, 2]))):
        shape = str(rng.choice([*SHAPES, *NEW_SHAPES]))
        objects.append(random_object(("any", shape, str(rng.choice(MOTIONS))), cfg, rng))
        fills.append(_random_rgb(rng))
    return objects, fills


def render_scene(index: int, seed: int, split: str = "train", config: SynthConfig | None = None
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """Clip `index` of the scenes: uint8 frames (T, H, W, 3) and what it shows (kind, photograph, objects)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cfg = config or SynthConfig()
    rng = np.random.default_rng([seed, SPLITS.index(split), index, 4099])
    kind = str(rng.choice(KINDS))
    s = cfg.supersample
    h, w, photo = cfg.height * s, cfg.width * s, None
    if kind == "photo":
        backgrounds, photo = _photo(rng, h, w, cfg.frames, TEST_PHOTOS if split == "test" else TRAIN_PHOTOS)
    else:
        backgrounds = {"plain": _plain, "gradient": _gradient, "texture": _texture}[kind](rng, h, w, cfg.frames)
    objects, fills = _objects(rng, cfg)
    images = [Image.fromarray(np.clip(b, 0, 255).round().astype(np.uint8)) for b in backgrounds]
    frames = draw_objects(lambda t: images[t].copy(), objects, fills, cfg)
    about = {"kind": kind, "photo": photo, "objects": [{**asdict(o), "fill": f} for o, f in zip(objects, fills)]}
    return frames, about


def generate_mixed(out: str | Path, clips: int, seed: int = 0, split: str = "train",
                   config: SynthConfig | None = None, scene_share: float = 0.5, progress: bool = True) -> Path:
    """Write `clips` clips as mp4 with their `metadata.jsonl`: a `scene_share` of them scenes (`render_scene`), the
    rest clip i of the synthetic world (with `config`'s light backgrounds). Every row keeps its `kind` ("world" or one
    of KINDS); `world.json` records the seed, split, share and config."""
    from tqdm import tqdm

    from hunyuan_video.video_io import write_video

    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    if not 0.0 <= scene_share <= 1.0:
        raise ValueError(f"scene_share must be in [0, 1], got {scene_share}")
    cfg = config or SynthConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(clips), desc=f"synth {split} with scenes", disable=not progress):
        file = f"{split}_{i:06d}.mp4"
        if np.random.default_rng([seed, SPLITS.index(split), i, 8191]).random() < 1 - scene_share:
            clip = sample_clip(i, seed, split, cfg)
            write_video(out / file, render_clip(clip, cfg), fps=cfg.fps)
            rows.append({**manifest_row(clip, file, cfg), "kind": "world"})
            continue
        frames, about = render_scene(i, seed, split, cfg)
        write_video(out / file, frames, fps=cfg.fps)
        caption = f"a {about['kind']} scene" + (f" ({about['photo']})" if about["photo"] else "")
        rows.append({"file": file, "caption": caption, "fps": cfg.fps, "frames": cfg.frames, "height": cfg.height,
                     "width": cfg.width, "split": split, **about})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    world = {"seed": seed, "split": split, "clips": clips, "scene_share": scene_share, "config": asdict(cfg)}
    (out / "world.json").write_text(json.dumps(world, indent=1) + "\n")
    return out
