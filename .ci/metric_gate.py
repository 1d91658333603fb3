"""Did a change make a grouped macro-F1 worse by more than its cross-validated spread? Markdown report + exit code.

Reads `reports/cv/<dataset>/cv.json` (the pipeline's `cv` stage) at a base revision and at the head (a revision, or
the working tree), compares the FFNN's grouped macro-F1 per dataset, and fails when the mean drops by more than the
base's standard deviation over folds: a drop inside the spread is what a different seed or CPU may give anyway.

Usage: python .ci/metric_gate.py --base main [--head REV] [--out report.md]
Exit status: 0 no regression, 1 a regression, 2 the comparison could not be made.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CV_DIR = "reports/cv"
SCORE = "macro_f1"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def read_scores(revision: str | None) -> dict[str, tuple[float, float]]:
    """Dataset -> (mean, sd) of the FFNN's grouped macro-F1, at `revision` (None: the working tree)."""
    if revision is None:
        files = {path.parent.name: path.read_text() for path in sorted(Path(CV_DIR).glob("*/cv.json"))}
    else:
        names = _git("ls-tree", "-r", "--name-only", revision, "--", CV_DIR).split()
        files = {
            Path(name).parent.name: _git("show", f"{revision}:{name}") for name in names if name.endswith("/cv.json")
        }
    scores = {}
    for dataset, text in files.items():
        summary = json.loads(text).get("grouped", {}).get("summary", {}).get("ffnn", {}).get(SCORE)
        if summary is not None:
            scores[dataset] = (float(summary["mean"]), float(summary["sd"]))
    return scores


def compare(base: dict[str, tuple[float, float]], head: dict[str, tuple[float, float]]) -> tuple[list[str], bool]:
    """Markdown table rows and whether any dataset regressed."""
    rows, regressed = [], False
    for dataset in sorted(base.keys() | head.keys()):
        if dataset not in head:
            rows.append(f"| {dataset} | {base[dataset][0]:.3f} ± {base[dataset][1]:.3f} | (gone) | | removed |")
            continue
        if dataset not in base:
            rows.append(f"| {dataset} | (new) | {head[dataset][0]:.3f} ± {head[dataset][1]:.3f} | | new |")
            continue
        (before, spread), (after, after_spread) = base[dataset], head[dataset]
        change = after - before
        worse = -change > spread
        regressed |= worse
        verdict = "**regression** (drop > base sd)" if worse else ("better" if change > 0 else "within the spread")
        cells = [f"{before:.3f} ± {spread:.3f}", f"{after:.3f} ± {after_spread:.3f}", f"{change:+.3f}", verdict]
        rows.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return rows, regressed


def main(argv: list[str] | None = None) -> int:
    """Compare, write the report, and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare against (e.g. main, origin/main)")
    parser.add_argument("--head", default=None, help="the revision compared (default: the working tree)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    try:
        base, head = read_scores(args.base), read_scores(args.head)
    except (subprocess.CalledProcessError, json.JSONDecodeError, KeyError, ValueError) as exc:
        print(f"metric gate: cannot read the cross-validation results: {exc}", file=sys.stderr)
        return 2
    if not base or not head:
        print(f"metric gate: no {CV_DIR}/*/cv.json at {'base' if not base else 'head'}", file=sys.stderr)
        return 2
    rows, regressed = compare(base, head)
    report = "\n".join(
        [
            f"### Grouped macro-F1 (FFNN, {CV_DIR}): {args.head or 'this change'} vs {args.base}",
            "",
            "| dataset | base (mean ± sd over folds) | head | change | verdict |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "A drop larger than the base's standard deviation over folds fails the check."
            if regressed
            else "No grouped macro-F1 dropped by more than its cross-validated spread.",
            "",
        ]
    )
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.out.with_name(args.out.name + ".tmp")
        temporary.write_text(report)
        temporary.replace(args.out)
    return 1 if regressed else 0


if __name__ == "__main__":
    sys.exit(main())
