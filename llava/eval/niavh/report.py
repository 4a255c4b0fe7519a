"""Aggregate the cell records: OUT/summary.json (means overall, per modality, per length, per depth) and one
heatmap picture per modality (depth x length, as the original's), OUT/heatmap_{modality}.png; where the cells
record whether the answer's best evidence span holds the needle (`needle_localised`), its mean
(`localisation_mean`) and a second heatmap per modality, OUT/heatmap_{modality}_localisation.png.

    summary = write_report(records, "runs/niavh")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llava.atomic import atomic_path, write_json_atomic

ANNOTATE_MAX_CELLS = 120  # small grids show each cell's score in its square


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _grouped(records: Sequence[dict], key: str) -> dict[str, float | None]:
    groups: dict[Any, list[float]] = {}
    for record in records:
        groups.setdefault(record[key], []).append(record["score"])
    return {f"{k:g}" if isinstance(k, (int, float)) else str(k): _mean(v) for k, v in sorted(groups.items())}


def _localised(records: Sequence[dict]) -> list[float]:
    return [r["needle_localised"] for r in records if r.get("needle_localised") is not None]


def _block(records: Sequence[dict]) -> dict[str, Any]:
    """Means of a group of cells; control_mean and net_mean are None unless the run asked the controls."""
    nontrivial = [r["score"] for r in records if not r.get("trivial")]
    return {
        "mean": _mean([r["score"] for r in records]),
        "mean_excluding_trivial": _mean(nontrivial),
        "control_mean": _mean([r["control_score"] for r in records if "control_score" in r]),
        "net_mean": _mean([r["net_score"] for r in records if "net_score" in r]),
        "localisation_mean": _mean(_localised(records)),
        "num_cells": len(records),
        "trivial_cells": len(records) - len(nontrivial),
    }


def summarize(records: Sequence[dict]) -> dict[str, Any]:
    """Means of the cells' scores: overall, per modality, per length, per depth, and per modality in detail.
    Trivial cells (the needle covers the whole video) count in `mean`, not in `mean_excluding_trivial`."""
    records = list(records)
    modalities = list(dict.fromkeys(r["modality"] for r in records))
    first = records[0] if records else {}
    summary: dict[str, Any] = {
        "model": first.get("model"),
        "scoring": first.get("scoring"),
        "score_range": first.get("score_range"),
        **_block(records),
        "per_modality": {m: _mean([r["score"] for r in records if r["modality"] == m]) for m in modalities},
        "per_length": _grouped(records, "context_length"),
        "per_depth": _grouped(records, "depth_percent"),
        "modalities": {},
    }
    for m in modalities:
        subset = [r for r in records if r["modality"] == m]
        summary["modalities"][m] = {
            "needle": subset[0]["needle"],
            **_block(subset),
            "per_length": _grouped(subset, "context_length"),
            "per_depth": _grouped(subset, "depth_percent"),
        }
    if first:
        summary.update(
            haystack=first.get("haystack"),
            fps=first.get("fps"),
            size=first.get("size"),
            model_settings=first.get("model_settings"),
        )
    return summary


def write_heatmap(
    records: Sequence[dict],
    path: str | Path,
    title: str,
    score_range: Sequence[float] = (0.0, 1.0),
    key: str = "score",
) -> Path:
    """Depth (rows, 0% on top) x length (columns) of each cell's `key` (its score, or e.g. needle_localised);
    missing cells gray. Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    lengths = sorted({r["context_length"] for r in records})
    depths = sorted({r["depth_percent"] for r in records})
    grid = np.full((len(depths), len(lengths)), np.nan)
    for r in records:
        if r.get(key) is not None:
            grid[depths.index(r["depth_percent"]), lengths.index(r["context_length"])] = r[key]
    cmap = LinearSegmentedColormap.from_list("niavh", ["#d7301f", "#fdd835", "#2e9e4f"]).with_extremes(bad="#cccccc")
    fig = Figure(figsize=(max(5.0, 0.32 * len(lengths) + 3.0), max(3.0, 0.35 * len(depths) + 1.8)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        cmap=cmap,
        vmin=score_range[0],
        vmax=score_range[1],
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(range(len(lengths)), [f"{v:g}" for v in lengths], rotation=90 if len(lengths) > 12 else 0)
    ax.set_yticks(range(len(depths)), [f"{v:g}%" for v in depths])
    ax.set_xlabel("video length (seconds)")
    ax.set_ylabel("needle depth")
    ax.set_title(title, fontsize=9, wrap=True)  # long titles wrap instead of being cut at the edges
    if grid.size <= ANNOTATE_MAX_CELLS:
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, f"{value:g}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label=key.replace("_", " "))
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def write_report(records: Iterable[dict], output_dir: str | Path) -> dict[str, Any]:
    """Write summary.json and heatmap_{modality}.png into `output_dir`; returns the summary."""
    records = list(records)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(records)
    summary["heatmaps"] = {}
    for modality, block in summary["modalities"].items():
        subset = [r for r in records if r["modality"] == modality]
        title = f"NIAVH {modality} needle, {summary['model']}: mean {block['mean']:g} ({summary['scoring']})"
        if block["control_mean"] is not None:
            title += f"; without the needle {block['control_mean']:g}, net {block['net_mean']:g}"
        path = write_heatmap(subset, output_dir / f"heatmap_{modality}.png", title, summary["score_range"])
        summary["heatmaps"][modality] = path.name
        if block["localisation_mean"] is not None:
            title = (
                f"NIAVH {modality} needle, {summary['model']}: the answer's best evidence span holds the needle "
                f"in {block['localisation_mean']:g} of the cells"
            )
            path = write_heatmap(
                subset, output_dir / f"heatmap_{modality}_localisation.png", title, (0.0, 1.0), "needle_localised"
            )
            summary["heatmaps"][f"{modality}_localisation"] = path.name
    write_json_atomic(summary, output_dir / "summary.json")
    return summary
