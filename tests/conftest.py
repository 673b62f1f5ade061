"""Fixtures shared by test modules (a module that defines its own fixture of the same name uses its own)."""

import pytest
import torch
from tiny_models import write_official_model

from hunyuan_video.pipelines import HunyuanVideoPipeline


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): tiny models run
    faster so on a shared CPU, and results that must equal a spawned rank's (which runs one thread) sum alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A random "test-tiny" model written in the official `ckpts/` layout, one per module."""
    return write_official_model(tmp_path_factory.mktemp("model") / "ckpts")


@pytest.fixture(scope="module")
def pipe(folder):
    """`folder`'s pipeline in float32 on the CPU, without progress bars."""
    ours = HunyuanVideoPipeline.from_pretrained(folder, dtype=torch.float32, device="cpu")
    ours.progress = False
    return ours
