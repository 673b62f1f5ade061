"""Throughput of `data curate`: minutes of footage processed per minute per core, per stage and end to end (locally
with 1 and 2 workers, and as a Ray Data pipeline on a local Ray instance).

The footage is the synthetic world's raw footage (hunyuan_video.tiny.raw), drawn at the size and rate asked for.
Per stage, each stage function runs alone over every frame of the footage in this process (one core); end to end,
the whole run (analysis, selection, export, report) goes into an empty folder each time.

    python bench/curate.py                                  # 3 seeds of 4 videos, 144x256 at 24 fps
    python bench/curate.py --seeds 8 --height 360 --width 640 --no-ray

Prints markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from hunyuan_video.curate import CurateConfig, curate
from hunyuan_video.curate.analyze import downscale
from hunyuan_video.curate.dedup import phash
from hunyuan_video.curate.export import export_clips
from hunyuan_video.curate.frames import black_bars, sharpness, to_gray
from hunyuan_video.curate.motion import flow_fit
from hunyuan_video.curate.probe import FrameStream, file_hash, probe
from hunyuan_video.curate.shots import ShotDetector
from hunyuan_video.tiny.raw import default_footage, draw_video
from hunyuan_video.video_io import write_video


def write_footage(raw: Path, seeds: int, height: int, width: int, fps: float) -> float:
    """Draw the footage of `seeds` seeds into `raw`; returns its length in seconds."""
    raw.mkdir(parents=True)
    seconds = 0.0
    for seed in range(seeds):
        for video in default_footage(seed):
            video.height, video.width, video.fps = height, width, fps
            frames = draw_video(video)
            write_video(raw / f"{video.name}_{seed}.mp4", frames, fps=fps)
            seconds += len(frames) / fps
    return seconds


def stage_seconds(raw: Path, config: CurateConfig) -> dict[str, float]:
    """Seconds each stage function takes over every frame of the footage, alone, in this process."""
    times = dict.fromkeys(("probe + hash", "decode", "shots", "frames", "motion", "dedup hashes", "export"), 0.0)
    files = sorted(raw.glob("*.mp4"))
    for path in files:
        t = time.perf_counter()
        info = probe(path)
        file_hash(path)
        times["probe + hash"] += time.perf_counter() - t
        t = time.perf_counter()
        frames = list(FrameStream(path))
        times["decode"] += time.perf_counter() - t
        small = [downscale(f, config.analysis_size) for f in frames]
        gray = [to_gray(s) for s in small]
        every = max(1, round(info.fps / config.samples_per_second))
        t = time.perf_counter()
        detector = ShotDetector(info.fps, config)
        for s in small:
            detector.push(s)
        detector.cuts()
        times["shots"] += time.perf_counter() - t
        t = time.perf_counter()
        for s, g in zip(small, gray):
            to_gray(s)
            sharpness(g)
            black_bars(s, config.black_level)
        for f in frames[::every]:
            black_bars(f, config.black_level)
        times["frames"] += time.perf_counter() - t
        t = time.perf_counter()
        for i in range(every, len(gray), every):
            flow_fit(gray[i - 1], gray[i])
        times["motion"] += time.perf_counter() - t
        t = time.perf_counter()
        for s in small[::every]:
            phash(s)
        times["dedup hashes"] += time.perf_counter() - t
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            export_clips(path, 0, info.fps, [{"id": "all", "start": 0, "end": len(frames), "crop": [0, 0, 0, 0]}],
                         out, config.crf)
            times["export"] += time.perf_counter() - t
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="copies of the footage (4 videos each), each its own")
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    args = parser.parse_args()
    config = CurateConfig(tiers=[])
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        footage = write_footage(raw, args.seeds, args.height, args.width, args.fps)
        minutes = footage / 60
        print(f"footage: {footage:.0f} s in {args.seeds * 4} videos, {args.height}x{args.width} at {args.fps:g} fps; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
              f"{os.environ.get('OMP_NUM_THREADS', 'default')}\n")
        print("| stage | seconds | footage minutes per minute per core |\n|---|---|---|")
        stages = stage_seconds(raw, config)
        for name, seconds in stages.items():
            print(f"| {name} | {seconds:.2f} | {footage / seconds:.1f} |")
        print(f"| all stages | {sum(stages.values()):.2f} | {footage / sum(stages.values()):.1f} |")
        runs = [("local, 1 worker", 1, False), ("local, 2 workers", 2, False)]
        if not args.no_ray:
            runs.append(("Ray Data, local Ray (2 CPUs)", 2, True))
        print("\n| run | wall seconds | footage minutes per minute | per core |\n|---|---|---|---|")
        for name, cores, ray in runs:
            if ray:
                import ray as ray_module

                ray_module.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
            t = time.perf_counter()
            result = curate(raw, Path(tmp) / f"out_{name.split(',')[0]}_{cores}", config, workers=cores, ray=ray,
                            progress=False)
            wall = time.perf_counter() - t
            if ray:
                ray_module.shutdown()
            assert result.analyzed == args.seeds * 4
            print(f"| {name} | {wall:.1f} | {minutes / (wall / 60):.1f} | {minutes / (wall / 60) / cores:.1f} |")


if __name__ == "__main__":
    main()
