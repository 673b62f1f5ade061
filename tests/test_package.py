import subprocess
import sys
from pathlib import Path

import hunyuan_video
from hunyuan_video.config import TRANSFORMER_PRESETS, TransformerConfig, config_from_dict, config_to_dict


def test_version_and_config_roundtrip():
    assert hunyuan_video.__version__
    cfg = TRANSFORMER_PRESETS["HYVideo-T/2-cfgdistill"]
    again = config_from_dict(TransformerConfig, config_to_dict(cfg))
    assert again == cfg


def test_python_m_runs_the_cli():
    """`python -m hunyuan_video` is the `hunyuan-video` command (what `torchrun -m hunyuan_video` launches)."""
    run = lambda *args: subprocess.run([sys.executable, "-m", "hunyuan_video", *args], capture_output=True, text=True)
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"hunyuan-video {hunyuan_video.__version__}"
    tiny = Path(hunyuan_video.__file__).parent / "assets" / "tiny"
    out = run("info", str(tiny))
    assert out.returncode == 0 and f"{tiny}: official layout" in out.stdout and "hidden_size:" in out.stdout
    out = run("info", str(tiny / "nowhere"))
    missing = f"hunyuan-video info: model folder {tiny / 'nowhere'} does not exist"
    assert out.returncode == 1 and out.stderr.strip() == missing


def test_the_public_names_resolve():
    from hunyuan_video import pipelines

    for name in hunyuan_video.__all__:
        assert getattr(hunyuan_video, name) is not None
    assert hunyuan_video.HunyuanVideoPipeline is pipelines.HunyuanVideoPipeline
