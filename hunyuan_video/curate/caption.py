"""Captions in the paper's structured form (short and dense description, background, style, shot type, lighting,
atmosphere) with the camera-movement label merged in, and the training caption composed from them.

With a `captioner` in the config ({"model": local folder, "frames": 4, "max_new_tokens": 160}), a vision-language
model is loaded through `transformers` (never downloaded) and asked for the fields as JSON; without one, the
description is the raw video's own caption file (RAW/NAME.txt) when it has one. A clip's caption file
(OUT/clips/ID.txt) that exists is kept as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

FIELDS = ("short", "dense", "background", "style", "shot_type", "lighting", "atmosphere")
CAMERA_PHRASES = {
    "static": "the camera is static", "pan_left": "the camera pans left", "pan_right": "the camera pans right",
    "tilt_up": "the camera tilts up", "tilt_down": "the camera tilts down", "zoom_in": "the camera zooms in",
    "zoom_out": "the camera zooms out", "handheld": "the camera is handheld",
}
PROMPT = ("Describe this video clip as a JSON object with the keys " + ", ".join(FIELDS)
          + ": short (one sentence), dense (a detailed description), background, style, shot_type, lighting, "
          "atmosphere.")


def compose(fields: dict[str, Any]) -> str:
    """The training caption from structured fields: the dense (or short) description, the background, style,
    shot type, lighting and atmosphere, then the camera movement."""
    parts = [fields.get("dense") or fields.get("short") or "a video clip"]
    parts += [f"{key.replace('_', ' ')}: {fields[key]}" for key in FIELDS[2:] if fields.get(key)]
    if fields.get("camera"):
        parts.append(CAMERA_PHRASES.get(fields["camera"], f"camera: {fields['camera']}"))
    return ". ".join(str(p).strip().rstrip(".") for p in parts) + "."


def parse_fields(text: str) -> dict[str, str]:
    """The structured fields in a model's answer: its first JSON object's known keys, or the whole text as the
    dense description when it holds none."""
    match = re.search(r"\{.*\}", text, re.S)
    if match:
        try:
            data = json.loads(match.group(0))
            if isinstance(data, dict):
                return {k: str(data[k]) for k in FIELDS if data.get(k)}
        except json.JSONDecodeError:
            pass
    return {"dense": text.strip()} if text.strip() else {}


class Captioner:
    """A local vision-language model (a `transformers` folder with a processor) that describes clips' frames."""

    def __init__(self, model: str | Path, frames: int = 4, max_new_tokens: int = 160) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = Path(model)
        self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True).eval()
        self.frames, self.max_new_tokens = frames, max_new_tokens

    def describe(self, frames: np.ndarray) -> dict[str, str]:
        """The structured fields for a clip's frames (T, H, W, 3) uint8: `frames` of them, evenly spaced, are shown
        to the model side by side as one image."""
        import torch
        from PIL import Image

        picks = np.linspace(0, len(frames) - 1, min(self.frames, len(frames))).round().astype(int)
        image = Image.fromarray(np.concatenate([frames[i] for i in picks], axis=1))
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(images=image, text=prompt, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        text = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
        return parse_fields(text)
