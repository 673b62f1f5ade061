import subprocess
import sys

import hunyuan_video
from hunyuan_video.config import TRANSFORMER_PRESETS, TransformerConfig, config_from_dict, config_to_dict


def test_version_and_config_roundtrip():
    assert hunyuan_video.__version__
    cfg = TRANSFORMER_PRESETS["HYVideo-T/2-cfgdistill"]
    again = config_from_dict(TransformerConfig, config_to_dict(cfg))
    assert again == cfg


def test_cli_version():
    out = subprocess.run([sys.executable, "-m", "hunyuan_video.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "hunyuan-video" in out.stdout
