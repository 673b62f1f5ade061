"""The training folder loses nothing: a run never overwrites another by mistake, --overwrite moves the earlier run
aside whole, --resume refuses a config that does not fit before writing anything, a kill during a checkpoint save
leaves the earlier checkpoint whole (and its temporary is removed on the next start), a torn log line is skipped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from toy_training import ToyConfig, train_toy

from hunyuan_video.train import loop
from hunyuan_video.train.common import JsonlLogger, load_checkpoint, read_jsonl, save_checkpoint
from hunyuan_video.train.run_dir import config_differences


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _same_model(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_run_over_an_earlier_one_is_refused_and_overwrite_moves_it_aside(tmp_path):
    out = tmp_path / "run"
    train_toy(out, ToyConfig())
    before = _snapshot(out)
    assert {"checkpoint.pt", "config.json", "log.jsonl", "loss.png"} <= before.keys()
    with pytest.raises(ValueError, match="already holds a run .*--resume.*--overwrite") as error:
        train_toy(out, ToyConfig(lr=0.1))
    assert "\n" not in str(error.value)
    assert _snapshot(out) == before  # nothing written, nothing appended to the log
    with pytest.raises(ValueError, match="pass one of them"):
        train_toy(out, ToyConfig(), resume=True, overwrite=True)
    train_toy(out, ToyConfig(lr=0.1), overwrite=True)
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert _snapshot(aside) == before  # the earlier run, whole, beside the new one
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 6 and len(read_jsonl(out / "log.jsonl")) == 6


def test_resume_with_a_config_that_does_not_fit_writes_nothing(tmp_path):
    out = tmp_path / "run"
    train_toy(out, ToyConfig(), max_steps=2)
    before = _snapshot(out)
    with pytest.raises(ValueError, match=r"config.json in lr \(0.05 -> 0.1\), width \(4 -> 8\); only checkpoint_every, "
                                         r"log_every may change") as error:
        train_toy(out, ToyConfig(width=8, lr=0.1), resume=True)
    assert "\n" not in str(error.value)
    assert _snapshot(out) == before
    (out / "config.json").unlink()  # without the run's config, the checkpoint's shapes still say no, in one line
    with pytest.raises(ValueError, match="its model does not fit this run \\(size mismatch for weight") as error:
        train_toy(out, ToyConfig(width=8), resume=True)
    assert "\n" not in str(error.value) and not (out / "config.json").exists()
    with pytest.raises(ValueError, match="checkpoint .* does not exist"):
        train_toy(tmp_path / "empty", ToyConfig(), resume=True)
    assert not (tmp_path / "empty").exists()


def test_resume_may_change_the_bookkeeping_and_stays_exact(tmp_path):
    straight = train_toy(tmp_path / "straight", ToyConfig())
    train_toy(tmp_path / "resumed", ToyConfig(), max_steps=3)
    resumed = train_toy(tmp_path / "resumed", ToyConfig(log_every=2), resume=True)
    assert _same_model(straight, resumed)
    assert '"log_every": 2' in (tmp_path / "resumed" / "config.json").read_text()  # the settings now in use


def test_config_differences_name_nested_fields():
    old = {"stages": [{"steps": 3}, {"steps": 2}], "transformer": {"hidden_size": 64}, "log_every": 1}
    new = {"stages": [{"steps": 3}], "transformer": {"hidden_size": 128}, "log_every": 5}
    assert config_differences(old, new, ("log_every",)) == [
        "stages[1].steps (2 -> (none))", "transformer.hidden_size (64 -> 128)"]


def test_a_kill_during_a_checkpoint_save_loses_nothing(tmp_path):
    """A child process is held inside the save of step 4's checkpoint (half written) and killed with SIGKILL; the
    checkpoint of step 2 is whole, the temporary is removed on resume, and the resumed run ends where a straight one
    does."""
    out, marker = tmp_path / "run", tmp_path / "held"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    child = subprocess.Popen([sys.executable, str(Path(__file__).parent / "toy_training.py"), str(out), str(marker),
                              "4"], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the child never reached the save"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    stale = [p.name for p in out.iterdir() if p.name.startswith(".checkpoint")]
    assert len(stale) == 1 and stale[0].endswith(".pt")  # the killed writer's temporary
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2  # the earlier checkpoint, whole
    resumed = train_toy(out, ToyConfig(), resume=True)
    assert not [p for p in out.iterdir() if p.name.startswith(".checkpoint")]  # removed on the next start
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 6
    assert _same_model(resumed, train_toy(tmp_path / "straight", ToyConfig()))


def test_a_whole_temporary_left_before_the_rename_is_never_taken_for_the_checkpoint(tmp_path):
    train_toy(tmp_path / "ahead", ToyConfig(), max_steps=4)
    out = tmp_path / "run"
    train_toy(out, ToyConfig(), max_steps=2)
    later = out / ".checkpoint.tmp99999.pt"  # step 4's state, complete, but its writer was killed before the rename
    later.write_bytes((tmp_path / "ahead" / "checkpoint.pt").read_bytes())
    resumed = train_toy(out, ToyConfig(), resume=True)  # from step 2, the run's checkpoint
    assert not later.exists() and load_checkpoint(out / "checkpoint.pt")["step"] == 6
    assert _same_model(resumed, train_toy(tmp_path / "straight", ToyConfig()))
    assert [r["step"] for r in read_jsonl(out / "log.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_a_full_disk_during_a_checkpoint_save_keeps_the_earlier_one(tmp_path, monkeypatch):
    import errno

    path = save_checkpoint(tmp_path / "checkpoint.pt", step=2)

    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, step=4)
    assert load_checkpoint(path)["step"] == 2 and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_torn_log_line_is_skipped_and_the_next_record_starts_a_line(tmp_path):
    out = tmp_path / "run"
    train_toy(out, ToyConfig(), max_steps=4)
    log = out / "log.jsonl"
    with log.open("a") as f:
        f.write('{"step": 5, "time": 1.0, "lo')  # a kill mid-write
    with pytest.warns(UserWarning, match="log.jsonl:5: skipped a line"):
        assert [r["step"] for r in read_jsonl(log)] == [1, 2, 3, 4]
    with pytest.warns(UserWarning, match="dropped a torn last line"):
        train_toy(out, ToyConfig(), resume=True)
    assert [r["step"] for r in read_jsonl(log)] == [1, 2, 3, 4, 5, 6]
    assert (out / "loss.png").stat().st_size > 0
    JsonlLogger(log)  # a whole log is left as it is
    assert log.read_text().endswith("}\n")


def test_a_plot_that_fails_is_a_warning_not_the_end_of_the_run(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("matplotlib is broken")

    monkeypatch.setattr(loop, "plot_losses", broken)
    with pytest.warns(UserWarning, match="could not draw .*loss.png: matplotlib is broken"):
        train_toy(tmp_path / "run", ToyConfig())
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 6


def test_a_corrupt_checkpoint_is_one_line(tmp_path):
    path = save_checkpoint(tmp_path / "checkpoint.pt", step=2, weights=torch.zeros(1000))
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="checkpoint .* is incomplete or corrupt") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)
