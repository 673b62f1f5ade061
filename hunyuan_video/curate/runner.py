"""The curation run: analyse every raw video (in N local processes, or as a Ray Data pipeline on a cluster), select
clips across the dataset (filters, near-duplicates), export them, caption them, sort them into tiers and write the
dataset folder with its report.

    OUT/metadata.jsonl          every kept clip: {"file": "clips/ID.mp4", "caption", "fps", "frames", "height",
                                "width", measurements...} (what `cache`, `train` and `train-vae` read)
    OUT/clips.parquet           every clip found, kept or not, with its measurements and reasons
    OUT/tiers/NAME/metadata.jsonl  each tier's clips (files referenced as ../../clips/ID.mp4), with their buckets
    OUT/report.json, OUT/report/*.png  counts per stage and reason, histograms, contact sheet
    OUT/.curate/                the cache: one analysis per (file hash, analysis settings), thumbnails

Every result is written atomically as soon as it is done, so a crash or a bad file loses no finished work, and a run
again over the same RAW and OUT does only what is not done yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hunyuan_video.curate.config import CurateConfig
from hunyuan_video.files import write_text_atomic

MAX_RAY_BLOCKS = 4096  # a Ray Data block holds one video (more each beyond this many videos)
RAW_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv",
                  ".3gp")


@dataclass
class CurateResult:
    """What a run did: the output folder, work done and skipped (cached), clips kept, report counts."""

    out: Path
    analyzed: int = 0
    analysis_cached: int = 0
    exported: int = 0
    kept: int = 0
    report: dict[str, Any] = field(default_factory=dict)


def raw_videos(raw: Path) -> list[Path]:
    """The video files under `raw` (by suffix, any case), sorted."""
    return sorted(p for p in raw.rglob("*") if p.is_file() and p.suffix.lower() in RAW_EXTENSIONS
                  and not p.name.startswith("."))


# --- stage tasks: plain functions of JSON-able dicts, run the same way by every engine ---

def analyze_task(task: dict[str, Any]) -> dict[str, Any]:
    """Analyse one raw video unless its analysis is cached: {"rel", "hash", "cached", "result"}. Unreadable files
    are results too (cached: they depend on the bytes only); an unexpected error is returned uncached."""
    from hunyuan_video.curate.analyze import analyze_video
    from hunyuan_video.curate.probe import file_hash

    config = CurateConfig(**task["config"])
    cache = Path(task["out"]) / ".curate"
    digest = file_hash(task["path"])
    entry = cache / "analysis" / f"{digest[:32]}-{config.analysis_key()}.json"
    if entry.is_file():
        return {"rel": task["rel"], "hash": digest, "cached": True, "result": json.loads(entry.read_text())}
    try:
        result = analyze_video(task["path"], digest, config, thumbs=cache / "thumbs")
    except Exception as e:  # a stage failing on one file must not stop the others
        return {"rel": task["rel"], "hash": digest, "cached": False,
                "result": {"status": "failed", "error": f"{type(e).__name__}: {e}", "probe": None, "cuts": [],
                           "clips": []}}
    write_text_atomic(entry, json.dumps(result) + "\n")
    return {"rel": task["rel"], "hash": digest, "cached": False, "result": result}


def export_task(task: dict[str, Any]) -> dict[str, Any]:
    """Write one source video's kept clips that are not written yet: {"rel", "written", "error"}."""
    from hunyuan_video.curate.export import export_clips

    try:
        written = export_clips(task["path"], task["rotation"], task["fps"], task["clips"],
                               Path(task["out"]) / "clips", task["crf"])
    except Exception as e:  # reported, and the other sources go on
        return {"rel": task["rel"], "written": 0, "error": f"{type(e).__name__}: {e}"}
    return {"rel": task["rel"], "written": written, "error": None}


# --- engines ---

def _json_row(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`fn` over Ray Data rows that carry the task as JSON text (so that rows keep one simple schema)."""
    def row_fn(row: dict[str, Any]) -> dict[str, Any]:
        return {"out": json.dumps(fn(json.loads(row["task"])))}

    return row_fn


def run_tasks(fn: Callable[[dict[str, Any]], dict[str, Any]], tasks: list[dict[str, Any]], workers: int,
              use_ray: bool, desc: str, progress: bool) -> Iterator[dict[str, Any]]:
    """The results of `fn` over `tasks` as they finish: in this process (workers 1), in `workers` processes, or as a
    Ray Data map over the connected cluster (`use_ray`), streamed: a task's result arrives when it is done."""
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc=desc, disable=not progress or not tasks)
    try:
        if not tasks:
            return
        if use_ray:
            import ray.data

            ray.data.DataContext.get_current().enable_progress_bars = False  # the bar above counts the tasks
            dataset = ray.data.from_items([{"task": json.dumps(t)} for t in tasks],
                                          override_num_blocks=min(len(tasks), MAX_RAY_BLOCKS))
            for row in dataset.map(_json_row(fn), num_cpus=1).iter_rows():
                bar.update()
                yield json.loads(row["out"])
        elif workers <= 1:
            for task in tasks:
                result = fn(task)
                bar.update()
                yield result
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for future in as_completed([pool.submit(fn, t) for t in tasks]):
                    bar.update()
                    yield future.result()
    finally:
        bar.close()


def require_extras(use_ray: bool) -> None:
    """Import what the stages need (the `curate` extra, and `ray` for Ray) now, so that a missing package is one
    ImportError before any work rather than a failure per video."""
    import cv2  # noqa: F401
    import imagehash  # noqa: F401
    import pyarrow  # noqa: F401
    import scenedetect  # noqa: F401

    if use_ray:
        import ray.data  # noqa: F401


def connect_ray(address: str | None) -> None:
    """Join the Ray cluster at `address` ("HOST:PORT"), or start a local one (None); nothing if already joined."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)


# --- the run ---

def _select(videos: list[dict[str, Any]], config: CurateConfig) -> list[dict[str, Any]]:
    """Every clip of every video as a row (source, measurements, `reasons`), exact and near duplicates marked."""
    from hunyuan_video.curate.dedup import remove_duplicates

    rows, seen = [], {}
    for video in videos:
        for clip in video["result"]["clips"]:
            row = {**clip, "source": video["rel"], "source_hash": video["hash"], "reasons": list(clip["reasons"])}
            if clip["id"] in seen:  # the same bytes as an earlier file
                row["reasons"].append(f"duplicate: of {clip['id']}, the same file as {seen[clip['id']]}")
            else:
                seen[clip["id"]] = video["rel"]
            rows.append(row)
    if config.dedup:
        live = [i for i, r in enumerate(rows) if not r["reasons"] and len(r["hashes"]) == 3]
        keys = [[int(h, 16) for h in rows[i]["hashes"]] for i in live]

        def rank(n: int) -> tuple:
            r = rows[live[n]]
            return -r["height"] * r["width"], -r["sharpness"], -r["frames"], r["source"], r["start"]

        for removed, kept in remove_duplicates(keys, config.dedup_distance, rank).items():
            rows[live[removed]]["reasons"].append(f"duplicate: of {rows[live[kept]]['id']}")
    return rows


def _captions(kept: list[dict[str, Any]], raw: Path, out: Path, config: CurateConfig, progress: bool) -> None:
    """Fill each kept row's `caption` and `caption_fields`: its caption file when there is one, else composed from
    the captioner's (or the raw video's caption file's) description and the camera label, and written."""
    from tqdm import tqdm

    from hunyuan_video.curate.caption import Captioner, compose

    captioner = None
    for row in tqdm(kept, desc="caption", disable=not progress or not kept):
        txt, fields_file = out / "clips" / f"{row['id']}.txt", out / "clips" / f"{row['id']}.caption.json"
        if txt.is_file() and txt.read_text().strip():
            row["caption"] = txt.read_text().strip()
            row["caption_fields"] = json.loads(fields_file.read_text()) if fields_file.is_file() else {}
            continue
        if config.captioner:
            from hunyuan_video.video_io import read_video

            captioner = captioner or Captioner(**config.captioner)
            fields = captioner.describe(read_video(out / "clips" / f"{row['id']}.mp4"))
        else:
            sidecar = (raw / row["source"]).with_suffix(".txt")
            fields = {"dense": sidecar.read_text().strip()} if sidecar.is_file() else {}
        fields["camera"] = row["camera"]
        row["caption"], row["caption_fields"] = compose(fields), fields
        write_text_atomic(fields_file, json.dumps(fields) + "\n")
        write_text_atomic(txt, row["caption"] + "\n")


MEASUREMENTS = ("source", "start", "end", "seconds", "crop", "sharpness", "brightness", "motion", "camera", "scores")


def _manifest_row(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = {"file": f"{prefix}clips/{row['id']}.mp4", "caption": row["caption"], "fps": row["fps"],
           "frames": row["frames"], "height": row["height"], "width": row["width"]}
    out.update({k: row[k] for k in MEASUREMENTS if row.get(k) is not None})
    out["caption_fields"] = row["caption_fields"]
    return out


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def _write_table(path: Path, rows: list[dict[str, Any]], tiers_of: dict[str, list[str]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hunyuan_video.curate.report import reason_kind
    from hunyuan_video.files import atomic_path

    table = [{
        "id": r["id"], "source": r["source"], "source_hash": r["source_hash"], "shot": r["shot"], "start": r["start"],
        "end": r["end"], "frames": r["frames"], "fps": r["fps"], "seconds": r["seconds"], "height": r["height"],
        "width": r["width"], "crop": r["crop"], "sharpness": r["sharpness"], "brightness": r["brightness"],
        "motion": r["motion"], "camera": r["camera"], "hashes": r["hashes"],
        "scores": json.dumps(r.get("scores") or {}), "kept": not r["reasons"],
        "reason": reason_kind(r["reasons"][0]) if r["reasons"] else "", "reasons": r["reasons"],
        "tiers": tiers_of.get(r["id"], []), "caption": r.get("caption", ""),
    } for r in rows]
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(table), tmp)


def curate(raw: str | Path, out: str | Path, config: CurateConfig | None = None, workers: int = 1,
           ray: bool = False, ray_address: str | None = None, progress: bool = True) -> CurateResult:
    """Curate the raw videos under `raw` into the dataset folder `out` (see the module's docstring); `workers`
    local processes, or Ray (`ray`, on the cluster at `ray_address` or a local one)."""
    from hunyuan_video.curate.report import write_report
    from hunyuan_video.curate.scorers import apply_scorers, check_models
    from hunyuan_video.curate.tiers import assign_tiers, check_tiers

    raw, out = Path(raw), Path(out)
    config = config or CurateConfig()
    if not raw.is_dir():
        raise ValueError(f"raw folder {raw} does not exist")
    if out.resolve() == raw.resolve() or raw.resolve() in out.resolve().parents:
        raise ValueError(f"the output folder {out} must not be inside the raw folder {raw}")
    check_tiers(config.tiers)
    check_models(config)
    files = raw_videos(raw)
    if not files:
        raise ValueError(f"no video files in {raw} (looked for {', '.join(RAW_EXTENSIONS)})")
    use_ray = ray or ray_address is not None
    require_extras(use_ray)
    if use_ray:
        connect_ray(ray_address)
    result = CurateResult(out)
    out.mkdir(parents=True, exist_ok=True)
    base = {"out": str(out.resolve()), "config": config.to_dict()}
    tasks = [{**base, "path": str(p.resolve()), "rel": str(p.relative_to(raw))} for p in files]
    videos = []
    for done in run_tasks(analyze_task, tasks, workers, use_ray, "analyse", progress):
        result.analysis_cached += done["cached"]
        result.analyzed += not done["cached"]
        videos.append(done)
    videos.sort(key=lambda v: v["rel"])
    rows = _select(videos, config)
    by_source = {v["rel"]: v for v in videos}
    apply_scorers([r for r in rows if not r["reasons"]], raw, out / ".curate", config)
    kept = [r for r in rows if not r["reasons"]]
    export = [{"out": base["out"], "path": str((raw / rel).resolve()), "rel": rel, "crf": config.crf,
               "rotation": by_source[rel]["result"]["probe"]["rotation"],
               "fps": by_source[rel]["result"]["probe"]["fps"],
               "clips": [{k: r[k] for k in ("id", "start", "end", "crop")} for r in kept if r["source"] == rel]}
              for rel in sorted({r["source"] for r in kept})]
    export_errors = {}
    for done in run_tasks(export_task, export, workers, use_ray, "export", progress):
        result.exported += done["written"]
        if done["error"]:
            export_errors[done["rel"]] = done["error"]
    for r in kept:
        if not (out / "clips" / f"{r['id']}.mp4").is_file():
            r["reasons"].append(f"export failed: {export_errors.get(r['source'], 'not written')}")
    kept = [r for r in kept if not r["reasons"]]
    _captions(kept, raw, out, config, progress)
    tiers = assign_tiers(kept, config.tiers)
    tiers_of: dict[str, list[str]] = {}
    for name, members in tiers.items():
        rows_of_tier = []
        for i, bucket in members:
            tiers_of.setdefault(kept[i]["id"], []).append(name)
            rows_of_tier.append({**_manifest_row(kept[i], "../../"), **({"bucket": bucket} if bucket else {})})
        _write_jsonl(out / "tiers" / name / "metadata.jsonl", rows_of_tier)
    _write_jsonl(out / "metadata.jsonl", (_manifest_row(r, "") for r in kept))
    _write_table(out / "clips.parquet", rows, tiers_of)
    result.kept = len(kept)
    result.report = write_report(out, videos, rows, {name: len(m) for name, m in tiers.items()})
    return result

