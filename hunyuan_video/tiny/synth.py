"""A synthetic world of captioned clips: coloured shapes moving on plain or gradient backgrounds.

Every clip is drawn from a few named attributes (colour, shape, size, motion, speed, background) that its caption
states and its manifest row keeps, with the per-frame position, scale and angle of each object, so that
`hunyuan_video.tiny.evaluate` can check a generated video against its caption.

The held-out split: a seed picks a set of (colour, shape, motion) combinations that never appear in the train split
(not even on a second object); the test split's main object always uses one of them. Every single attribute and
every pair of attributes still appears in training, so the test split measures composition, not new words.

New concepts: `new_concepts=True` draws a second world whose main objects always show a colour (`NEW_COLOURS`), a
shape (`NEW_SHAPES`) or a motion (`NEW_MOTIONS`: "moves in a circle", in words the default world already uses) the
default world never does, with its own held-out split; it is for teaching a model trained on the default world
something new (a LoRA). The default world's clips, captions and vocabulary do not depend on it.

Light backgrounds: with `SynthConfig.light_prob` > 0, that share of clips is drawn on a light background
(`LIGHT_BACKGROUNDS`, "on a white background"), one far from every object's colour; the objects, paths and the rest
of each clip are those of the same clip without them (a light_prob of 0 draws the default world bit for bit).

Each clip is a pure function of (seed, split, index): a folder can be regenerated, extended or sharded. (The drawn
frames are; their H.264 files are not always bit-identical: PyAV's encoding of the same frames varies in the last
bits now and then.)
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

# Object colours: saturated and far apart in RGB, so a blurry generated pixel still has one nearest name.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (40, 200, 50),
    "blue": (40, 80, 255),
    "yellow": (245, 230, 40),
    "white": (250, 250, 250),
    "orange": (255, 140, 0),
    "purple": (160, 40, 220),
    "cyan": (40, 225, 235),
}
# Background colours: dark or grey, each far from every object colour.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "dark blue": (15, 25, 90),
    "dark green": (15, 75, 30),
    "gray": (115, 115, 115),
}
# Light backgrounds (plain, never gradients), used for a `light_prob` share of clips; an object colour closer than
# MIN_CONTRAST to one never appears on it.
LIGHT_BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "light gray": (190, 190, 190),
    "light blue": (165, 200, 240),
}
MIN_CONTRAST = 120.0
SHAPES = ("circle", "square", "triangle", "star")
# The new concepts: a colour and a shape outside the default world. Pink lies >= 21 degrees (seen from every
# background) from every object colour, more than orange from yellow (16), so the evaluator can tell it apart.
NEW_COLOURS: dict[str, tuple[int, int, int]] = {"pink": (255, 60, 160)}
NEW_SHAPES = ("heart",)
NEW_MOTIONS = ("orbit",)
# Circumradius of each size, as a fraction of the shorter frame side.
SIZES: dict[str, float] = {"small": 0.09, "medium": 0.13, "large": 0.18}
# Unit direction (x right, y down) of each straight motion.
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up_left": (-math.sqrt(0.5), -math.sqrt(0.5)),
    "up_right": (math.sqrt(0.5), -math.sqrt(0.5)),
    "down_left": (-math.sqrt(0.5), math.sqrt(0.5)),
    "down_right": (math.sqrt(0.5), math.sqrt(0.5)),
}
MOTIONS = (*DIRECTIONS, "bounce", "grow", "shrink", "rotate", "still")
# Distance travelled over the whole clip by a straight motion, as a fraction of the shorter frame side.
SPEEDS: dict[str, float] = {"slow": 0.25, "fast": 0.5}
GROW_SCALE = (0.55, 1.45)  # scale at the first and last frame of "grow" ("shrink" runs it backwards)
BOUNCE_HEIGHT = 0.35  # of the frame height
BOUNCES = 2  # floor-to-floor hops in a clip
ROTATE_TURNS = 0.5  # turns over the clip
ORBIT_RADIUS = 0.2  # of the shorter frame side: "moves in a circle" goes once round a circle this wide

# How captions say each motion; `{speed}` is filled by SPEED_WORDS for straight motions.
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("moves{speed} to the left", "slides{speed} left"),
    "right": ("moves{speed} to the right", "slides{speed} right"),
    "up": ("moves{speed} up", "slides{speed} upward"),
    "down": ("moves{speed} down", "slides{speed} downward"),
    "up_left": ("moves{speed} up and to the left", "drifts{speed} diagonally up and left"),
    "up_right": ("moves{speed} up and to the right", "drifts{speed} diagonally up and right"),
    "down_left": ("moves{speed} down and to the left", "drifts{speed} diagonally down and left"),
    "down_right": ("moves{speed} down and to the right", "drifts{speed} diagonally down and right"),
    "bounce": ("bounces up and down", "is bouncing"),
    "grow": ("grows", "gets bigger"),
    "shrink": ("shrinks", "gets smaller"),
    "rotate": ("rotates", "spins in place"),
    "still": ("stays still", "does not move"),
    "orbit": ("moves in a circle", "drifts in a circle"),
}
SPEED_WORDS: dict[str, tuple[str, ...]] = {"slow": (" slowly",), "fast": (" quickly", " fast")}
# Whole-caption templates: {objects} is one or two object phrases joined by "and".
TEMPLATES = (
    "{objects} on a {background} background",
    "{objects} against a {background} background",
    "on a {background} background {objects}",
)
OBJECT_TEMPLATE = "a {size} {colour} {shape} {motion}"
GRADIENT_WORD = "gradient"  # "a dark blue gradient background": the named colour fading to black at the bottom

SPLITS = ("train", "test")
HELD_OUT_FRACTION = 0.1


@dataclass
class SynthConfig:
    """Size and timing of the generated clips (defaults suit a tiny text-to-video model)."""

    height: int = 64
    width: int = 64
    frames: int = 17
    fps: float = 8.0
    two_object_prob: float = 0.25
    gradient_prob: float = 0.3
    light_prob: float = 0.0  # share of clips on a light background (LIGHT_BACKGROUNDS)
    supersample: int = 4  # antialiasing: draw at this many times the size, then box-filter down

    def __post_init__(self) -> None:
        self.fps = float(self.fps)
        if self.height < 16 or self.width < 16 or self.height % 2 or self.width % 2:
            raise ValueError(f"height and width must be even and >= 16, got {self.height}x{self.width}")
        if self.frames < 5:
            raise ValueError(f"frames must be >= 5 for motion to be visible, got {self.frames}")
        if not 0.0 <= self.two_object_prob <= 1.0:
            raise ValueError(f"two_object_prob must be in [0, 1], got {self.two_object_prob}")
        if not 0.0 <= self.light_prob <= 1.0:
            raise ValueError(f"light_prob must be in [0, 1], got {self.light_prob}")


@dataclass
class SynthObject:
    """One object of a clip and its per-frame path (x, y in pixels; scale multiplies the size's radius)."""

    colour: str
    shape: str
    size: str
    motion: str
    speed: str | None
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    angle: list[float] = field(default_factory=list)  # degrees


@dataclass
class SynthClip:
    """Everything about one clip but its pixels: attributes, paths and caption."""

    index: int
    split: str
    background: str
    gradient: bool
    objects: list[SynthObject]
    caption: str


def valid_combos(new_concepts: bool = False) -> list[tuple[str, str, str]]:
    """Every (colour, shape, motion) a main object can show: a rotating circle looks still, so it is left out. With
    `new_concepts`, those of the new-concept world instead: every one with a new colour, shape or motion."""
    if not new_concepts:
        return [
            (c, s, m) for c, s, m in itertools.product(COLOURS, SHAPES, MOTIONS)
            if not (s == "circle" and m == "rotate")
        ]
    return [
        (c, s, m)
        for c, s, m in itertools.product([*COLOURS, *NEW_COLOURS], [*SHAPES, *NEW_SHAPES], [*MOTIONS, *NEW_MOTIONS])
        if (c in NEW_COLOURS or s in NEW_SHAPES or m in NEW_MOTIONS) and not (s == "circle" and m == "rotate")
    ]


def held_out_combos(seed: int, new_concepts: bool = False) -> set[tuple[str, str, str]]:
    """The (colour, shape, motion) combinations of the test split: a deterministic function of `seed` (and of
    which world, `new_concepts`).

    Redrawn until every (colour, shape), (colour, motion) and (shape, motion) pair still occurs in training (for
    the new-concept world: in its own train split or in the default world's).
    """
    return set(_held_out_combos(seed, new_concepts))


@functools.cache
def _held_out_combos(seed: int, new_concepts: bool) -> frozenset[tuple[str, str, str]]:
    combos = valid_combos(new_concepts)
    n = round(HELD_OUT_FRACTION * len(combos))
    rng = np.random.default_rng([seed, 7919, 1] if new_concepts else [seed, 7919])
    default_train = [c for c in valid_combos() if c not in held_out_combos(seed)] if new_concepts else []
    while True:
        picked = {combos[i] for i in rng.choice(len(combos), size=n, replace=False)}
        train = [c for c in combos if c not in picked] + default_train
        every_concept = not new_concepts or all(sum(_new_concept(c) == k for c in picked) >= 3 for k in range(3))
        if every_concept and all(_pairs(picked, k) <= _pairs(train, k) for k in ((0, 1), (0, 2), (1, 2))):
            return frozenset(picked)


def _new_concept(combo: tuple[str, str, str]) -> int:
    """Which new concept a combo of the new-concept world shows: 0 its colour, 1 its shape, 2 its motion (the first
    of them, when it shows several)."""
    colour, shape, motion = combo
    return 0 if colour in NEW_COLOURS else 1 if shape in NEW_SHAPES else 2


def _pairs(combos: Any, keep: tuple[int, int]) -> set[tuple[str, str]]:
    return {(c[keep[0]], c[keep[1]]) for c in combos}


def caption_vocabulary() -> list[str]:
    """Every word any caption can use, sorted (for a tokenizer builder)."""
    texts = [*TEMPLATES, OBJECT_TEMPLATE, "and", GRADIENT_WORD, *COLOURS, *SHAPES, *SIZES, *BACKGROUNDS]
    texts += [p for phrases in MOTION_PHRASES.values() for p in phrases]
    texts += [w for words in SPEED_WORDS.values() for w in words]
    words = {w for t in texts for w in t.split() if not w.startswith("{")}
    return sorted(w.replace("{speed}", "") for w in words)


def light_background_words() -> list[str]:
    """The words captions of light backgrounds add to `caption_vocabulary()`, sorted."""
    return sorted({w for name in LIGHT_BACKGROUNDS for w in name.split()} - set(caption_vocabulary()))


def new_concept_words() -> list[str]:
    """The words captions of the new-concept world add to `caption_vocabulary()`, sorted."""
    return sorted([*NEW_COLOURS, *NEW_SHAPES])


def object_slots(caption: str) -> list[int]:
    """Which object each word of a caption describes: k for the words of the k-th object phrase ("a {size} ..."),
    0 for the words around them (the background's, the joining "and", the template's)."""
    words = caption.split()
    slots, k, inside = [], 0, False
    for i, word in enumerate(words):
        nxt = words[i + 1 : i + 3]
        if word == "a" and nxt[:1] and nxt[0] in SIZES:
            k, inside = k + 1, True
        elif inside and ((word in ("on", "against") and nxt[:1] == ["a"])
                         or (word == "and" and len(nxt) == 2 and nxt[0] == "a" and nxt[1] in SIZES)):
            inside = False
        slots.append(k if inside else 0)
    return slots


def swap_motions(caption: str) -> str:
    """The caption with the motion phrases of its two objects swapped (the same words, bound the other way)."""
    words, slots = caption.split(), object_slots(caption)
    if max(slots, default=0) != 2:
        raise ValueError(f"{caption!r} does not name two objects")
    spans = [[i for i, s in enumerate(slots) if s == k] for k in (1, 2)]
    motions = [words[span[4]: span[-1] + 1] for span in spans]  # after "a {size} {colour} {shape}"
    first, second = spans
    out = words[: first[4]] + motions[1] + words[first[-1] + 1 : second[4]] + motions[0] + words[second[-1] + 1 :]
    return " ".join(out)


def _object_phrase(obj: SynthObject, rng: np.random.Generator) -> str:
    motion = str(rng.choice(MOTION_PHRASES[obj.motion]))
    speed = str(rng.choice(SPEED_WORDS[obj.speed])) if obj.speed else ""
    return OBJECT_TEMPLATE.format(size=obj.size, colour=obj.colour, shape=obj.shape, motion=motion.format(speed=speed))


def make_caption(objects: Sequence[SynthObject], background: str, gradient: bool, rng: np.random.Generator) -> str:
    """A caption for the clip, in one of several phrasings picked by `rng`."""
    bg = f"{background} {GRADIENT_WORD}" if gradient else background
    objs = " and ".join(_object_phrase(o, rng) for o in objects)
    return str(rng.choice(TEMPLATES)).format(objects=objs, background=bg)


def _path(obj: SynthObject, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Fill the object's per-frame x, y, scale, angle; the object stays inside the frame the whole clip."""
    side = min(cfg.height, cfg.width)
    r = SIZES[obj.size] * side
    t = np.linspace(0.0, 1.0, cfg.frames)
    scale = np.ones_like(t)
    angle = np.full_like(t, rng.uniform(0, 360) if obj.shape != "circle" else 0.0)
    if obj.motion == "grow" or obj.motion == "shrink":
        lo, hi = GROW_SCALE
        scale = lo + (hi - lo) * (t if obj.motion == "grow" else 1 - t)
    reach = r * scale.max() + 1  # how far from the centre the object extends, plus a pixel of margin
    if obj.motion in DIRECTIONS:
        dx, dy = DIRECTIONS[obj.motion]
        dist = SPEEDS[obj.speed] * side
        x0 = rng.uniform(reach - min(dx, 0) * dist, cfg.width - reach - max(dx, 0) * dist)
        y0 = rng.uniform(reach - min(dy, 0) * dist, cfg.height - reach - max(dy, 0) * dist)
        x, y = x0 + dx * dist * t, y0 + dy * dist * t
    elif obj.motion == "orbit":
        radius, turn = ORBIT_RADIUS * side, rng.uniform(0, 2 * math.pi) + rng.choice([-1, 1]) * 2 * math.pi * t
        cx = rng.uniform(reach + radius, cfg.width - reach - radius)
        cy = rng.uniform(reach + radius, cfg.height - reach - radius)
        x, y = cx + radius * np.cos(turn), cy + radius * np.sin(turn)
    elif obj.motion == "bounce":
        floor = cfg.height - reach
        x = np.full_like(t, rng.uniform(reach, cfg.width - reach))
        y = floor - BOUNCE_HEIGHT * cfg.height * np.abs(np.sin(math.pi * BOUNCES * t))
    else:
        x = np.full_like(t, rng.uniform(reach, cfg.width - reach))
        y = np.full_like(t, rng.uniform(reach, cfg.height - reach))
        if obj.motion == "rotate":
            angle = angle + 360 * ROTATE_TURNS * t
    obj.x, obj.y = [round(float(v), 3) for v in x], [round(float(v), 3) for v in y]
    obj.scale, obj.angle = [round(float(v), 4) for v in scale], [round(float(v), 3) for v in angle]


def random_object(combo: tuple[str, str, str], cfg: SynthConfig, rng: np.random.Generator) -> SynthObject:
    """An object of (colour, shape, motion) with a size, a speed (straight motions) and a path drawn by `rng`."""
    colour, shape, motion = combo
    speed = str(rng.choice(list(SPEEDS))) if motion in DIRECTIONS else None
    obj = SynthObject(colour, shape, str(rng.choice(list(SIZES))), motion, speed)
    _path(obj, cfg, rng)
    return obj


def _apart(a: SynthObject, b: SynthObject, side: int) -> bool:
    """Whether two objects never touch during the clip."""
    gap = [
        math.hypot(xa - xb, ya - yb) - (SIZES[a.size] * sa + SIZES[b.size] * sb) * side
        for xa, ya, sa, xb, yb, sb in zip(a.x, a.y, a.scale, b.x, b.y, b.scale)
    ]
    return min(gap) > 2


def sample_clip(
    index: int, seed: int, split: str = "train", config: SynthConfig | None = None, new_concepts: bool = False
) -> SynthClip:
    """The attributes, paths and caption of clip `index` of `split` for `seed` (no pixels yet). With
    `new_concepts`, a clip of the new-concept world: its main object has a new colour, shape or motion (a second
    object is one of the default world's train split)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cfg = config or SynthConfig()
    held = held_out_combos(seed)
    train_combos = sorted(c for c in valid_combos() if c not in held)
    rng = np.random.default_rng([seed, SPLITS.index(split), index, *([1] if new_concepts else [])])
    if new_concepts:
        new_held = held_out_combos(seed, new_concepts=True)
        pool = sorted(new_held if split == "test" else set(valid_combos(new_concepts=True)) - new_held)
        concept = rng.integers(3)  # each new concept in a third of the clips
        pool = [c for c in pool if _new_concept(c) == concept]
    else:
        pool = sorted(held) if split == "test" else train_combos
    objects = [random_object(pool[rng.integers(len(pool))], cfg, rng)]
    if rng.random() < cfg.two_object_prob:
        others = [c for c in train_combos if c[0] != objects[0].colour]
        for _ in range(20):  # a second object that never overlaps the first, when one is found quickly
            second = random_object(others[rng.integers(len(others))], cfg, rng)
            if _apart(objects[0], second, min(cfg.height, cfg.width)):
                objects.append(second)
                break
    background = str(rng.choice(list(BACKGROUNDS)))
    gradient = bool(rng.random() < cfg.gradient_prob)
    if cfg.light_prob > 0 and rng.random() < cfg.light_prob:  # drawn last: the rest of the clip stays as it is
        fits = [b for b in LIGHT_BACKGROUNDS if all(_contrast(o.colour, b) >= MIN_CONTRAST for o in objects)]
        if fits:
            background, gradient = str(rng.choice(fits)), False
    return SynthClip(index, split, background, gradient, objects, make_caption(objects, background, gradient, rng))


def _contrast(colour: str, background: str) -> float:
    """RGB distance between an object colour and a light background."""
    rgb = COLOURS.get(colour) or NEW_COLOURS[colour]
    return float(np.linalg.norm(np.subtract(rgb, LIGHT_BACKGROUNDS[background], dtype=np.float64)))


def shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Polygon vertices of a shape with circumradius r (angle in degrees, clockwise on screen)."""
    if shape == "square":
        corners = [45 + 90 * k for k in range(4)]
        radii = [r] * 4
    elif shape == "triangle":
        corners = [-90 + 120 * k for k in range(3)]
        radii = [r] * 3
    elif shape == "star":
        corners = [-90 + 36 * k for k in range(10)]
        radii = [r if k % 2 == 0 else 0.45 * r for k in range(10)]
    elif shape == "heart":
        corners, radii = _HEART_ANGLES, [r * u for u in _HEART_RADII]
    else:
        raise ValueError(f"unknown polygon shape {shape!r}")
    return [
        (cx + rr * math.cos(math.radians(a + angle)), cy + rr * math.sin(math.radians(a + angle)))
        for a, rr in zip(corners, radii)
    ]


def _heart_outline(points: int = 32) -> tuple[list[float], list[float]]:
    """The classic heart curve (point down on screen) as polar (angle in degrees, radius / circumradius) around the
    centre of its bounding box."""
    t = np.linspace(0.0, 2 * math.pi, points, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))  # screen y grows downwards
    x, y = x - (x.max() + x.min()) / 2, y - (y.max() + y.min()) / 2
    radius = np.hypot(x, y)
    return [float(a) for a in np.degrees(np.arctan2(y, x))], [float(u) for u in radius / radius.max()]


_HEART_ANGLES, _HEART_RADII = _heart_outline()


def _background(name: str, gradient: bool, height: int, width: int) -> np.ndarray:
    colour = np.array(BACKGROUNDS.get(name) or LIGHT_BACKGROUNDS[name], dtype=np.float32)
    if not gradient:
        return np.broadcast_to(colour, (height, width, 3)).copy()
    # The named colour at the top, fading to a darker (black: lighter) shade at the bottom.
    end = colour * 0.35 if colour.max() > 0 else np.full(3, 70.0, dtype=np.float32)
    w = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to(colour * (1 - w) + end * w, (height, width, 3)).copy()


def render_clip(clip: SynthClip, config: SynthConfig | None = None) -> np.ndarray:
    """Draw a clip: uint8 (T, H, W, 3), antialiased by supersampling."""
    cfg = config or SynthConfig()
    s = cfg.supersample
    bg = Image.fromarray(_background(clip.background, clip.gradient, cfg.height * s, cfg.width * s).round()
                         .astype(np.uint8))
    fills = [COLOURS.get(o.colour) or NEW_COLOURS[o.colour] for o in clip.objects]
    return draw_objects(lambda t: bg.copy(), clip.objects, fills, cfg)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float,
               fill: int | tuple[int, ...]) -> None:
    """Draw `shape` with circumradius `r` around (cx, cy), turned by `angle` degrees, filled with `fill`."""
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(shape_points(shape, cx, cy, r, angle), fill=fill)


def draw_objects(background: Callable[[int], Image.Image], objects: Sequence[SynthObject],
                 fills: Sequence[tuple[int, int, int]], config: SynthConfig) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of `objects` (main first, drawn last, on top) filled with `fills`, over
    `background(t)`: an RGB image `supersample` times the frame size, box-filtered down after drawing."""
    s, side = config.supersample, min(config.height, config.width)
    frames = []
    for t in range(config.frames):
        image = background(t)
        draw = ImageDraw.Draw(image)
        for obj, fill in zip(reversed(objects), reversed(fills)):
            cx, cy = obj.x[t] * s, obj.y[t] * s
            draw_shape(draw, obj.shape, cx, cy, SIZES[obj.size] * side * obj.scale[t] * s, obj.angle[t], tuple(fill))
        frames.append(np.asarray(image.resize((config.width, config.height), Image.Resampling.BOX)))
    return np.stack(frames)


def manifest_row(clip: SynthClip, file: str, config: SynthConfig) -> dict[str, Any]:
    """The metadata.jsonl row of a clip: file, caption, size, timing, attributes and per-frame paths."""
    return {
        "file": file,
        "caption": clip.caption,
        "fps": config.fps,
        "frames": config.frames,
        "height": config.height,
        "width": config.width,
        "split": clip.split,
        "background": clip.background,
        "gradient": clip.gradient,
        "objects": [asdict(o) for o in clip.objects],
    }


def generate(
    out: str | Path, clips: int, seed: int = 0, split: str = "train", config: SynthConfig | None = None,
    progress: bool = True, first: int = 0, new_concepts: bool = False,
) -> Path:
    """Write clips `first` .. `first + clips - 1` of the world as mp4 files and their `metadata.jsonl` (plus
    `world.json`: seed, config, held-out combos, and `"new_concepts": true` for the new-concept world). A later
    `first` extends a dataset with clips it does not hold."""
    from tqdm import tqdm

    from hunyuan_video.video_io import write_video

    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    if first < 0:
        raise ValueError(f"first must be >= 0, got {first}")
    cfg = config or SynthConfig()
    out = Path(out)
    if (out / "world.json").exists():
        held = json.loads((out / "world.json").read_text())
        if held["split"] != split:
            raise ValueError(f"{out} already holds another split of the world: write the {split} split to its own "
                             "folder")
        if held.get("new_concepts", False) != new_concepts:
            raise ValueError(f"{out} already holds clips of the {'default' if new_concepts else 'new-concept'} "
                             "world: write the other world to its own folder")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(first, first + clips), desc=f"synth {split}", disable=not progress):
        clip = sample_clip(i, seed, split, cfg, new_concepts)
        file = f"{split}_{i:06d}.mp4"
        write_video(out / file, render_clip(clip, cfg), fps=cfg.fps)
        rows.append(manifest_row(clip, file, cfg))
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    world = {"seed": seed, "split": split, "first": first, "clips": clips, "config": asdict(cfg),
             "held_out": sorted(list(c) for c in held_out_combos(seed, new_concepts))}
    if new_concepts:
        world["new_concepts"] = True
    (out / "world.json").write_text(json.dumps(world, indent=1) + "\n")
    return out
