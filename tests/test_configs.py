"""The shipped training configs: each one loads into its dataclass and writes to its own run folder."""

from pathlib import Path

import pytest

from hunyuan_video.train.common import load_config
from hunyuan_video.train.dit import DiTTrainConfig
from hunyuan_video.train.vae import VAETrainConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.json"))


def load(path: Path):
    """Load a config with the loader its kind's CLI command uses (vae_* -> train-vae, the rest -> train)."""
    return load_config(VAETrainConfig if path.name.startswith("vae") else DiTTrainConfig, path)


def test_configs_exist():
    assert any(p.name.startswith("vae") for p in CONFIGS) and any(p.name.startswith("dit") for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads(path: Path):
    config = load(path)
    assert config.out_dir, f"{path.name} has no out_dir"


def test_run_folders_are_distinct():
    owners: dict[str, str] = {}
    for path in CONFIGS:
        out = str(Path(load(path).out_dir))
        assert out not in owners, f"{path.name} and {owners[out]} both write to {out}"
        owners[out] = path.name


@pytest.mark.parametrize("name", ["vae_tiny.json", "dit_tiny.json"])
def test_unknown_key_is_refused(tmp_path: Path, name: str):
    bad = tmp_path / name
    bad.write_text((ROOT / "configs" / name).read_text().replace('"lr"', '"learning_rate"', 1))
    with pytest.raises(ValueError, match="learning_rate"):
        load(bad)
