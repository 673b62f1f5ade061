"""Pipelines: text-to-video sampling, the model-folder layouts it loads, its defaults and its CPU offload."""

from hunyuan_video.pipelines.defaults import NEGATIVE_PROMPT, GenerationDefaults
from hunyuan_video.pipelines.layouts import ModelFolder, describe_model_folder, find_model_folder, weight_summary
from hunyuan_video.pipelines.offload import ModelOffload
from hunyuan_video.pipelines.text_to_video import HunyuanVideoPipeline, PromptEmbeds, VideoOutput

__all__ = [
    "NEGATIVE_PROMPT",
    "GenerationDefaults",
    "HunyuanVideoPipeline",
    "ModelFolder",
    "ModelOffload",
    "PromptEmbeds",
    "VideoOutput",
    "describe_model_folder",
    "find_model_folder",
    "weight_summary",
]
