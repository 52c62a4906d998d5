#!/usr/bin/env python3
"""Draws the sequential-injection matrix of `engram selfparam-eval` (results.json): F1[i][j], the
closed-book F1 on document j after i injections, as a heat map, one panel per run (with and
without term (C)). The diagonal j = i - 1 is efficacy, the cells below it retention, the cells
above it the not-yet-injected baseline.

usage: tools/plot_selfparam.py RUN/selfparam/results.json [OUT_DIR]
Writes sequential_f1.png next to results.json (or into OUT_DIR). Needs matplotlib (tools/setup.sh
installs Debian's python3-matplotlib; run it with /usr/bin/python3 if another python3 comes first).
"""
import json
import os
import sys


def matrix(run):
    """The F1 matrix of one sequential run as a list of rows (i = 0..N)."""
    n = run["documents"]
    return [[run["f1"][f"{i}-{j}"] for j in range(n)] for i in range(n + 1)]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        results = json.load(f)
    runs = [(key, label) for key, label in (("sequential", "SELF-PARAM"),
                                             ("sequential_without_unrelated", "without term (C)"))
            if key in results]
    if not runs:
        sys.exit(f"{path}: no sequential run (engram selfparam-eval --experiments sequential)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 5), squeeze=False)
    for ax, (key, label) in zip(axes[0], runs):
        image = ax.imshow(matrix(results[key]), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_title(f"{label}: F1 on document j after i injections")
        ax.set_xlabel("document j")
        ax.set_ylabel("injections i")
        fig.colorbar(image, ax=ax)
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, "sequential_f1.png")
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
