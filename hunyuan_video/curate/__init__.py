"""From raw footage to training-ready clips: `hunyuan-video data curate RAW OUT`.

Stages (each a small module, each configurable in `CurateConfig` and able to be switched off): probe, shots
(PySceneDetect), frames (start frame, letterbox, fades), motion (optical flow, camera label), dedup (perceptual
hashes), scorers (learned scorers and embedders from local paths), caption (a local vision-language model), tiers,
report; `runner` runs them on local processes or Ray Data. Needs the `curate` extra (`pip install
hunyuan-video[curate]`, and `[ray]` for Ray).
"""

from hunyuan_video.curate.config import CurateConfig
from hunyuan_video.curate.runner import CurateResult, curate

__all__ = ["CurateConfig", "CurateResult", "curate"]
