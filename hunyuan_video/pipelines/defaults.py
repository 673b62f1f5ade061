"""The settings a pipeline call uses for what it is not given: the official ones, with a model folder's
`generate.json` files over them (`ModelFolder.settings_folders`: an official `ckpts/` root's, then the model's own)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

# The official default negative prompt, used with true classifier-free guidance when none is given.
NEGATIVE_PROMPT = ("Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
                   "bad teeth, bad eyes, bad limbs, distortion")
GENERATION_DEFAULTS_FILE = "generate.json"
DTYPES = ("bfloat16", "float16", "float32")


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling settings, named as in `generate.json` and the CLI's options (the pipeline call's argument in the
    comments); the field defaults are the official model's."""

    height: int = 720
    width: int = 1280
    frames: int = 129  # num_frames
    steps: int = 50  # num_inference_steps
    guidance: float = 6.0  # guidance_scale, for a model with a guidance embedding
    cfg_scale: float = 1.0  # cfg_scale
    negative_prompt: str = NEGATIVE_PROMPT  # negative_prompt, used when cfg_scale > 1
    shift: float = 7.0  # flow_shift
    fps: float = 24.0  # frames per second of a written video
    dtype: str = "bfloat16"  # the weights' dtype when `from_pretrained` is given none

    @classmethod
    def read(cls, *folders: str | Path) -> GenerationDefaults:
        """The official settings with each folder's `generate.json` over them, in order (a later folder's values
        over an earlier one's), for the folders that have one."""
        values: dict = {}
        for folder in folders:
            values.update(cls._read_file(Path(folder) / GENERATION_DEFAULTS_FILE))
        return cls(**values)

    @classmethod
    def _read_file(cls, path: Path) -> dict:
        """The settings in the `generate.json` at `path` (none when there is no such file), checked by name."""
        if not path.is_file():
            return {}
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        known = [f.name for f in dataclasses.fields(cls)]
        if unknown := sorted(set(values) - set(known)):
            raise ValueError(f"{path}: unknown settings {', '.join(unknown)} (known: {', '.join(known)})")
        if values.get("dtype", cls.dtype) not in DTYPES:
            raise ValueError(f"{path}: dtype must be one of {', '.join(DTYPES)}, got {values['dtype']!r}")
        return values
