"""Write a shapes-world evaluation (`videoldm.evaluation.shapes_eval`) as files, each atomically:

`shapes.md` (the table, the targets with pass/fail, the setup), `shapes.json` (the same numbers and every video's
findings), `shapes.png` (bar plot of the two modes) and `shapes_grid.gif` (columns: captions; top row aligned,
bottom row image-only, animated).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from videoldm.evaluation.shapes_eval import FRACTIONS, MODES, TARGETS, ShapesEvalResult, checks
from videoldm.io import atomic_path, image_grid, write_video

FILES = ("shapes.md", "shapes.json", "shapes.png", "shapes_grid.gif")
COLUMNS = {
    "colour_correct": "colour correct",
    "shape_correct": "shape correct",
    "direction_correct": "direction correct",
    "all_correct": "all correct",
    "consistent": "consistent",
    "identity": "identity",
    "smoothness": "smoothness (px/frame²)",
    "videos": "videos",
}
GIF_MIN_SIZE = 128  # grid cells are upscaled (nearest) to at least this many pixels
GIF_FPS = 8.0


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 (first 16 hex digits) over the relative paths and bytes of a model folder's files."""
    digest = hashlib.sha256()
    folder = Path(model_dir)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _finite(value: Any) -> Any:
    """nan/inf -> None recursively (strict JSON has no nan)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def report_dict(result: ShapesEvalResult, *, command: str, model: str, fingerprint: str) -> dict[str, Any]:
    """Everything `shapes.json` holds: setup, machine, wall time, scores per mode, targets, per-video rows."""
    targets = checks(result.scores)
    return _finite(
        {
            "command": command,
            "model": model,
            "model_sha256": fingerprint,
            "settings": asdict(result.settings),
            "captions": len({r["caption"] for r in result.rows["aligned"]}),
            "wall_time_s": {k: round(v, 2) for k, v in result.seconds.items()},
            "machine": result.machine,
            "scores": result.scores,
            "targets": targets,
            "passed": all(t["passed"] for t in targets if not t["extra"]),
            "grid_captions": result.grid_captions,
            "videos": result.rows,
        }
    )


def _value(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return str(int(value)) if key == "videos" else f"{value:.3f}"


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report from `report_dict`'s output."""
    s, m, t = report["settings"], report["machine"], report["wall_time_s"]
    lines = [
        "# Shapes world: the aligned Video LDM vs its image model (before alignment)",
        "",
        f"{int(report['scores']['aligned']['videos'])} videos per mode: {s['videos_per_caption']} per caption for "
        f"{report['captions']} captions, the same initial noise in both modes. *image-only* is the same model "
        "with every alpha = 1 and the image VAE decoder (the image LDM frame by frame: before alignment). Each "
        "video is read back by `videoldm.evaluation.shapes_analysis` (segmentation of the saturated object, its "
        "hue, its shape, its centroid track) and compared with its caption.",
        "",
        "| mode | " + " | ".join(COLUMNS.values()) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for mode in MODES:
        scores = report["scores"][mode]
        lines.append(f"| {mode} | " + " | ".join(_value(k, scores[k]) for k in COLUMNS) + " |")
    lines += [
        "",
        "Fractions of videos. *consistent*: an object in every frame, with the same colour and the same shape in "
        "all of them. *identity*: consistent, and the object tracked from frame to frame (its centroid moves "
        "less than its radius between consecutive frames, so the silhouettes overlap: the same object moving, not a "
        "new one drawn elsewhere). *direction*: the dominant axis of a linear fit to the centroid track (slower "
        "than 0.25 px/frame counts as static, hence wrong). *smoothness*: the mean norm of the centroid's second "
        "difference (0 for constant-speed motion; lower is smoother).",
        "",
        "## Targets",
        "",
        "| check | target | value | result |",
        "|---|---|---|---|",
    ]
    for check in report["targets"]:
        verdict = "pass" if check["passed"] else "**FAIL**"
        name = f"{check['name']} (extra, not a target)" if check["extra"] else check["name"]
        lines.append(f"| {name} | {check['target']} | {_value('', check['value'])} | {verdict} |")
    lines += ["", f"The targets: {'all met' if report['passed'] else '**not all met**'}.", ""]
    lines += _failures(report["videos"]["aligned"])
    lines += [
        "## Plot and samples",
        "",
        "![scores](shapes.png)",
        "",
        "![grid](shapes_grid.gif)",
        "",
        "Top row aligned, bottom row image-only; columns, left to right: "
        + "; ".join(f"*{c}*" for c in report["grid_captions"])
        + " (the first video of each caption, same noise in both rows).",
        "",
        "## Setup",
        "",
        f"- command: `{report['command']}`",
        f"- model: `{report['model']}` (sha256 of its files: `{report['model_sha256']}`)",
        f"- seed {s['seed']}, {s['steps']} steps, guidance {s['guidance']}, {s['num_frames']} frames, "
        f"videos per caption {s['videos_per_caption']}, batches of {s['batch_size']} videos",
        f"- wall time: {t['total']:.1f} s (loading {t['load']:.1f} s, aligned {t['aligned']:.1f} s, "
        f"image-only {t['image-only']:.1f} s)",
        f"- machine: {m['cpu']}, {m['cpu_count']} cores, {m['torch_threads']} torch threads, device {m['device']}; "
        f"torch {m['torch']}, Python {m['python']}",
        "",
    ]
    return "\n".join(lines)


def _failures(rows: list[dict[str, Any]], limit: int = 12) -> list[str]:
    """A list of the aligned videos that missed their caption or changed identity (at most `limit`)."""
    bad = [r for r in rows if not (r["all_correct"] and r["consistent"])]
    if not bad:
        return ["Every aligned video shows its caption, consistently.", ""]
    lines = [f"## Aligned videos that missed ({len(bad)})", ""]
    for r in bad[:limit]:
        found = r["found"]
        motion = "static" if found["direction"] == "static" else f"moving {found['direction']}"
        shown = f"{found['colour']} {found['shape']} {motion}"
        note = "" if r["consistent"] else ", identity changes across frames"
        lines.append(f"- video {r['index']} *{r['caption']}*: found {shown}{note}")
    if len(bad) > limit:
        lines.append(f"- ... and {len(bad) - limit} more (see shapes.json)")
    return [*lines, ""]


def write_plot(path: Path, scores: dict[str, dict[str, float]]) -> Path:
    """Grouped bars of the fractions per mode with the targets marked, and the smoothness per mode."""
    # A Figure on an Agg canvas, not pyplot: no global backend switch, no GUI, imported up front so that a missing
    # matplotlib fails before the generation rather than after it.
    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [5, 1.3]})
    width = 0.38
    for i, mode in enumerate(MODES):
        xs = [j + (i - 0.5) * width for j in range(len(FRACTIONS))]
        left.bar(xs, [scores[mode][k] for k in FRACTIONS], width, label=mode, color=f"C{i}")
        right.bar([i], [_plottable(scores[mode]["smoothness"])], 0.6, color=f"C{i}")
    for j, key in enumerate(FRACTIONS):
        if key in TARGETS:
            left.hlines(TARGETS[key], j - 1.2 * width, j + 1.2 * width, colors="black", linestyles="dashed", lw=1)
    left.set_xticks(range(len(FRACTIONS)), [COLUMNS[k] for k in FRACTIONS], fontsize=9)
    left.set_ylim(0, 1.05)
    left.set_ylabel("fraction of videos")
    left.set_title("prompt adherence and identity consistency (dashed: target)", fontsize=10)
    left.legend(loc="lower left")
    right.set_xticks(range(len(MODES)), MODES, fontsize=9)
    right.set_ylabel("px / frame²")
    right.set_title("smoothness\n(lower: smoother)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    return path


def _plottable(value: float | None) -> float:
    return 0.0 if value is None or not math.isfinite(value) else value


def write_grid_gif(path: Path, grid: dict[str, torch.Tensor], *, fps: float = GIF_FPS) -> Path:
    """Videos (N, 3, T, H, W) per mode -> one animated GIF: a row per mode, a column per caption."""
    videos = torch.cat([grid[mode] for mode in MODES])  # (2N, 3, T, H, W)
    n, c, t, h, w = videos.shape
    scale = max(1, math.ceil(GIF_MIN_SIZE / max(h, w)))
    frames = videos.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
    frames = torch.nn.functional.interpolate(frames, scale_factor=scale, mode="nearest")
    frames = frames.reshape(n, t, c, h * scale, w * scale)
    per_frame = [image_grid(frames[:, i], columns=n // len(MODES), padding=4) for i in range(t)]
    return write_video(path, torch.stack(per_frame, dim=1), fps=fps)


def write_report(
    out_dir: str | Path, result: ShapesEvalResult, *, command: str, model: str, fingerprint: str
) -> dict[str, Path]:
    """Write shapes.md, shapes.json, shapes.png and shapes_grid.gif into `out_dir` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = report_dict(result, command=command, model=model, fingerprint=fingerprint)
    paths = {name: out / name for name in FILES}
    write_plot(paths["shapes.png"], result.scores)
    write_grid_gif(paths["shapes_grid.gif"], result.grid)
    with atomic_path(paths["shapes.json"]) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_path(paths["shapes.md"]) as tmp:
        tmp.write_text(render_markdown(report))
    return paths
