"""The run's report: counts in and out per stage and per reason (report.json), histograms of the measurements of
kept and rejected clips, and a contact sheet of kept and rejected examples (report/*.png)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from hunyuan_video.files import atomic_path, write_text_atomic

HISTOGRAMS = ("seconds", "sharpness", "brightness", "motion")
SHEET_EXAMPLES = 12  # of each of kept and rejected


def reason_kind(reason: str) -> str:
    """The kind of a rejection reason ("KIND: details" -> "KIND")."""
    return reason.split(":")[0]


def summarize(videos: list[dict[str, Any]], rows: list[dict[str, Any]], tiers: dict[str, int]) -> dict[str, Any]:
    """Counts per stage: videos read, partly read and unreadable (each with its reason), clips found, rejected per
    reason (a clip counts under its first reason), kept, per tier."""
    status = Counter(v["result"]["status"] for v in videos)
    rejected = Counter(reason_kind(r["reasons"][0]) for r in rows if r["reasons"])
    return {
        "videos": {"in": len(videos), **{k: status.get(k, 0) for k in ("ok", "partial", "unreadable", "failed")}},
        "problems": [{"file": v["rel"], "status": v["result"]["status"], "reason": v["result"]["error"]}
                     for v in videos if v["result"]["status"] != "ok"],
        "clips": {"found": len(rows), "rejected": dict(sorted(rejected.items())),
                  "kept": sum(not r["reasons"] for r in rows)},
        "cameras": dict(sorted(Counter(str(r["camera"]) for r in rows if not r["reasons"]).items())),
        "tiers": tiers,
    }


def _histograms(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(HISTOGRAMS), figsize=(4 * len(HISTOGRAMS), 3))
    for ax, key in zip(axes, HISTOGRAMS):
        for kept, colour in ((True, "tab:green"), (False, "tab:red")):
            values = [r[key] for r in rows if (not r["reasons"]) == kept and r.get(key) is not None]
            if values:
                ax.hist(values, bins=20, alpha=0.6, color=colour, label="kept" if kept else "rejected")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def _contact_sheet(path: Path, rows: list[dict[str, Any]], thumbs: Path) -> None:
    """Kept examples on the top row(s), rejected below, each labelled (camera, or the reason)."""
    from PIL import Image, ImageDraw

    picks = [r for r in rows if not r["reasons"]][:SHEET_EXAMPLES] + [r for r in rows if r["reasons"]][:SHEET_EXAMPLES]
    tiles = []
    for r in picks:
        thumb = thumbs / f"{r['id']}.jpg"
        image = Image.open(thumb).convert("RGB").resize((112, 64)) if thumb.is_file() else Image.new("RGB", (112, 64))
        tile = Image.new("RGB", (112, 80), (255, 255, 255) if not r["reasons"] else (255, 220, 220))
        tile.paste(image, (0, 0))
        ImageDraw.Draw(tile).text((2, 66), (r["camera"] or "") if not r["reasons"] else reason_kind(r["reasons"][0]),
                                  fill=(0, 0, 0))
        tiles.append(tile)
    if not tiles:
        return
    columns = 6
    sheet = Image.new("RGB", (columns * 112, -(-len(tiles) // columns) * 80), (128, 128, 128))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % columns) * 112, (n // columns) * 80))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def write_report(out: Path, videos: list[dict[str, Any]], rows: list[dict[str, Any]],
                 tiers: dict[str, int]) -> dict[str, Any]:
    """Write OUT/report.json, OUT/report/histograms.png and OUT/report/contact_sheet.png; returns the counts."""
    summary = summarize(videos, rows, tiers)
    write_text_atomic(out / "report.json", json.dumps(summary, indent=1) + "\n")
    (out / "report").mkdir(exist_ok=True)
    if rows:
        _histograms(out / "report" / "histograms.png", rows)
        _contact_sheet(out / "report" / "contact_sheet.png", rows, out / ".curate" / "thumbs")
    return summary


