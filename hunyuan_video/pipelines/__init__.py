"""Pipelines: text-to-video and image-to-video sampling, the model-folder layouts they load, their defaults and CPU
offload."""

from hunyuan_video.pipelines.defaults import NEGATIVE_PROMPT, GenerationDefaults
from hunyuan_video.pipelines.image_to_video import HunyuanVideoImageToVideoPipeline
from hunyuan_video.pipelines.layouts import (
    ModelFolder,
    describe_model_folder,
    find_model_folder,
    folder_transformer_config,
    model_choices,
    weight_summary,
)
from hunyuan_video.pipelines.offload import ModelOffload
from hunyuan_video.pipelines.text_to_video import HunyuanVideoPipeline, PromptEmbeds, VideoOutput

__all__ = [
    "NEGATIVE_PROMPT",
    "GenerationDefaults",
    "HunyuanVideoImageToVideoPipeline",
    "HunyuanVideoPipeline",
    "ModelFolder",
    "ModelOffload",
    "PromptEmbeds",
    "VideoOutput",
    "describe_model_folder",
    "find_model_folder",
    "folder_transformer_config",
    "model_choices",
    "weight_summary",
]
