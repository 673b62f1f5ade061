"""Image-to-video sampling (HunyuanVideo-I2V): the text-to-video pipeline with the image as the first frame.

The image is resized and centre-cropped to the video's size (the official bucket of its aspect when no size is
given), encoded by the VAE to one latent frame, and read by the LLaVA text encoder next to the prompt. The two
released kinds of transformer take it differently (`TransformerConfig.i2v_condition_type`):
- `token_replace`: the first latent frame is the clean image latent at every step (its tokens modulated from t = 0
  by the transformer itself); only frames 1.. are stepped.
- `latent_concat`: the transformer reads 33 channels, the noisy latents, the image latent in frame 0 (zeros after)
  and a mask (1 in frame 0); the decoded video starts after the frames of the first latent frame.
With `i2v_stability` the starting latents are 0.999 noise + 0.001 image latent (every frame), as the official
`--i2v-stability`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from hunyuan_video.config import TransformerConfig
from hunyuan_video.pipelines.layouts import ModelFolder
from hunyuan_video.pipelines.text_to_video import HunyuanVideoPipeline, PromptEmbeds, VideoOutput
from hunyuan_video.scheduler import euler_step
from hunyuan_video.text_encoder import LLaVATextEncoder

# The official `image_embed_interleave`: every 4th image state for token replace, every 2nd for latent concat.
IMAGE_EMBED_INTERLEAVE = {"token_replace": 4, "latent_concat": 2}
I2V_STABILITY_NOISE = 0.999  # the share of noise in the starting latents with i2v_stability
BUCKET_MULTIPLE = 32  # the official buckets' sizes are multiples of 32 pixels
BUCKET_MAX_RATIO = 4.0  # and at most 4:1


def load_image(image: Image.Image | np.ndarray | str | Path) -> Image.Image:
    """`image` as an RGB PIL image: a PIL image, a uint8 `(H, W, 3)` array or an image file (a ValueError naming
    the file when it cannot be read as an image)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an image array must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        return Image.fromarray(image)
    if not isinstance(image, (str, Path)):
        raise ValueError(f"image must be a PIL image, a uint8 (H, W, 3) array or a file path, got {type(image)}")
    try:
        with Image.open(image) as opened:
            return opened.convert("RGB")
    except FileNotFoundError:
        raise ValueError(f"no image file at {image}") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read {image} as an image ({type(error).__name__}): use a PNG or JPEG file") from None


def official_buckets(base_size: int) -> list[tuple[int, int]]:
    """The official I2V sizes `(height, width)` for `base_size` (960 for 720p, 720 for 540p, 480 for 360p): multiples
    of 32 pixels, the widest for each height within `base_size`² pixels, at most 4:1."""
    patches = round((base_size / BUCKET_MULTIPLE) ** 2)
    buckets = []
    for h in range(1, patches + 1):
        w = patches // h
        if max(h, w) / min(h, w) <= BUCKET_MAX_RATIO:
            buckets.append((h * BUCKET_MULTIPLE, w * BUCKET_MULTIPLE))
    return buckets


def closest_bucket(height: int, width: int, base_size: int) -> tuple[int, int]:
    """The official bucket for `base_size` whose aspect is closest to `height / width` (the smaller on a tie)."""
    buckets = official_buckets(base_size)
    if not buckets:
        raise ValueError(f"no {BUCKET_MULTIPLE}-pixel bucket fits a base size of {base_size}: pass height and width")
    return min(buckets, key=lambda hw: abs(hw[0] / hw[1] - height / width))


def fit_image(image: Image.Image, height: int, width: int) -> torch.Tensor:
    """`image` scaled (Lanczos) to cover `height` x `width`, centre-cropped to it: float32 `(3, H, W)` in [-1, 1]."""
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    pixels = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1) * 2.0 - 1.0


@dataclass
class ImageCondition:
    """The image of one call: the picture (for the LLaVA vision tower) and, once the latents are prepared, the
    video's size, the image latent `(B, C, 1, h, w)` (scaled) and, for latent concat, the extra input channels."""

    picture: Image.Image
    stability: bool
    size: tuple[int, int] | None = None  # (height, width)
    latent: torch.Tensor | None = None
    concat: torch.Tensor | None = None  # (B, C + 1, T, h, w): the image latent in frame 0, then zeros; the mask


class HunyuanVideoImageToVideoPipeline(HunyuanVideoPipeline):
    """HunyuanVideo-I2V: `pipe(image, prompt) -> VideoOutput`, a video starting from `image`.

    Loads an image-to-video model folder (`from_pretrained`: official `hunyuan-video-i2v-720p/` + `text_encoder_i2v/`
    or diffusers' I2V layout); everything else (offload, fp8, step caches, sliding tile attention, parallel, LoRA)
    works as in `HunyuanVideoPipeline`.
    """

    image_to_video = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.check_model_kind(self.transformer.config)
        self._condition: ImageCondition | None = None

    @classmethod
    def check_model_kind(cls, config: TransformerConfig) -> None:
        """A ValueError when the transformer of `config` is not an image-to-video model."""
        if config.i2v_condition_type is None:
            raise ValueError("this folder holds a text-to-video model: it takes no image (drop --image, or use "
                             "HunyuanVideoPipeline)")

    @classmethod
    def load_text_encoder(cls, folder: ModelFolder, config: TransformerConfig, dtype: torch.dtype,
                          device: torch.device) -> LLaVATextEncoder:
        """The whole LLaVA model of `folder`, reading every 4th (token replace) or 2nd (latent concat) image state."""
        return LLaVATextEncoder.from_pretrained(
            folder.text_encoder, folder.tokenizer, dtype, device, image_processor_dir=folder.image_processor,
            image_embed_interleave=IMAGE_EMBED_INTERLEAVE[config.i2v_condition_type])

    @property
    def kind(self) -> str:
        """The transformer's image condition type: "token_replace" or "latent_concat"."""
        return self.transformer.config.i2v_condition_type

    def bucket(self, image: Image.Image) -> tuple[int, int]:
        """The video size for `image` when a call names none: the official bucket of its aspect, for the base size
        of the defaults' height and width (960 for the official 720 x 1280)."""
        return closest_bucket(image.height, image.width, round((self.defaults.height * self.defaults.width) ** 0.5))

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image | np.ndarray | str | Path,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        cfg_scale: float | None = None,
        flow_shift: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        callback: Callable[[int, torch.Tensor], None] | None = None,
        i2v_stability: bool = False,
    ) -> VideoOutput:
        """Sample videos for `prompt` starting from `image` (one image for every prompt: a PIL image, a uint8
        `(H, W, 3)` array or a file). Without `height` and `width` the size is the official bucket of the image's
        aspect (`bucket`); with them the image is scaled to cover the size and centre-cropped. `i2v_stability`
        starts from 0.999 noise + 0.001 image latent. With true CFG the negative prompts see a black image. A
        latent-concat model's video has `time_compression_ratio` frames fewer than `num_frames` (its first latent
        frame's are dropped); "latent" output keeps every latent frame. The other arguments are
        `HunyuanVideoPipeline.__call__`'s."""
        picture = load_image(image)
        if (height is None) != (width is None):
            raise ValueError("give both height and width, or neither (the official bucket of the image's aspect)")
        if height is None:
            height, width = self.bucket(picture)
        self._condition = ImageCondition(picture, i2v_stability)
        try:
            return super().__call__(prompt, negative_prompt, height, width, num_frames, num_inference_steps,
                                    guidance_scale, cfg_scale, flow_shift, seed, generator, latents, output_type,
                                    callback)
        finally:
            self._condition = None

    @torch.no_grad()
    def prepare_latents(
        self,
        batch: int,
        height: int,
        width: int,
        num_frames: int,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int | None]:
        """The starting latents (see `HunyuanVideoPipeline.prepare_latents`) with the image in them: the image is
        fitted to the size and VAE-encoded (the posterior's mode); token replace puts its latent in frame 0,
        latent concat builds its extra channels; `i2v_stability` mixes 0.001 of it into every frame first."""
        condition = self._condition
        if condition is None:
            raise ValueError("prepare_latents of the image-to-video pipeline runs inside a call with an image")
        noise, seed = super().prepare_latents(batch, height, width, num_frames, seed, generator, latents)
        frame = fit_image(condition.picture, height, width)[None, :, None]  # (1, 3, 1, H, W)
        with self._on_device(self.vae):
            vae_dtype = next(self.vae.parameters()).dtype
            posterior = self.vae.encode(frame.to(self.device, vae_dtype))
        image_latent = (posterior.mode().float() * self.vae.config.scaling_factor).expand(batch, -1, -1, -1, -1)
        if condition.stability:
            t = torch.tensor(I2V_STABILITY_NOISE, device=self.device)
            noise = noise * t + image_latent * (1 - t)
        if self.kind == "token_replace":
            noise = torch.cat([image_latent, noise[:, :, 1:]], dim=2)
        else:
            cond = torch.zeros_like(noise)
            cond[:, :, :1] = image_latent
            mask = torch.zeros_like(noise[:, :1])
            mask[:, :, 0] = 1
            condition.concat = torch.cat([cond, mask], dim=1)
        condition.size, condition.latent = (height, width), image_latent
        return noise, seed

    def encode_llm(self, texts: list[str], prompts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The LLaVA states of `texts`: the prompts with the call's image, the negatives with a black one."""
        condition = self._condition
        black = Image.new("RGB", condition.size[::-1], 0)
        return self.text_encoder(texts, [condition.picture] * prompts + [black] * (len(texts) - prompts))

    def step(self, latents: torch.Tensor, sigma: float, sigma_next: float, embeds: PromptEmbeds,
             guidance: torch.Tensor | None, cfg_scale: float) -> torch.Tensor:
        """One Euler step: latent concat reads the image channels beside the latents; token replace steps frames 1..
        and keeps the image latent in frame 0."""
        condition = self._condition
        if self.kind == "latent_concat":
            x = torch.cat([latents, condition.concat], dim=1)
            return euler_step(latents, self.predict_velocity(x, sigma, embeds, guidance, cfg_scale), sigma, sigma_next)
        velocity = self.predict_velocity(latents, sigma, embeds, guidance, cfg_scale)
        stepped = euler_step(latents[:, :, 1:], velocity[:, :, 1:], sigma, sigma_next)
        return torch.cat([condition.latent, stepped], dim=2)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The VAE decode (see `HunyuanVideoPipeline.decode`); a latent-concat model's video starts after the frames
        of its first latent frame."""
        video = super().decode(latents)
        return video[:, self.vae.config.time_compression_ratio:] if self.kind == "latent_concat" else video
