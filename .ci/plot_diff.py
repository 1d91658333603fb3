"""`dvc plots diff --json` as PNG images: one figure per plot file, a panel per model, a colour per revision.

Usage: dvc plots diff main --json | python .ci/plot_diff.py --out diff/plots
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _encodings(spec: dict) -> list[dict]:
    """Every `encoding` of a Vega-Lite spec, depth first through its layers."""
    found = [spec["encoding"]] if "encoding" in spec else []
    for layer in spec.get("layer", []):
        found += _encodings(layer)
    return found


def render(plots: dict, out: Path) -> list[Path]:
    """One PNG per plot file of `dvc plots diff --json`'s `data`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, entries in sorted(plots.items()):
        rows = [row for entry in entries for row in entry.get("content", {}).get("data", {}).get("values", [])]
        if not rows:
            continue
        content = entries[0]["content"]
        x = content["encoding"]["x"]["field"]
        # the y field sits in the first layer of DVC's templates (the top level has x and colour only)
        y = next(e["y"]["field"] for e in _encodings(content) if "y" in e and "field" in e["y"])
        curves: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
        for row in rows:
            curves[(row.get("model", ""), row["rev"], row.get("class", ""))].append((float(row[x]), float(row[y])))
        models = sorted({key[0] for key in curves})
        revisions = sorted({key[1] for key in curves})
        fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
        for axis, model in zip(axes[0], models, strict=True):
            for (curve_model, revision, _label), points in curves.items():
                if curve_model != model:
                    continue
                colour = COLOURS[revisions.index(revision) % len(COLOURS)]
                axis.plot(*zip(*points, strict=True), color=colour, linewidth=0.8, alpha=0.8)
            for revision in revisions:
                axis.plot([], [], color=COLOURS[revisions.index(revision) % len(COLOURS)], label=revision)
            axis.set(title=model or name, xlabel=x, ylabel=y, xlim=(0, 1), ylim=(0, 1.02))
            axis.legend(loc="lower left")
        fig.suptitle(name, fontsize=9)
        fig.tight_layout()
        path = out / (name.replace("/", "_").removesuffix(".csv") + ".png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    """Read the JSON from stdin, write the images, list them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    written = render(json.load(sys.stdin).get("data", {}), args.out)
    for path in written:
        print(path)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
