#!/usr/bin/env python3
"""Draws the curves of `engram eval` (results.json): F1 against documents absorbed, and
retention of the stream's first tenth, one line per contender that has curves, with the
closed-book and context-in-prompt rows as horizontal references.

usage: tools/plot_eval.py RUN/eval/results.json [OUT_DIR]
Writes f1_vs_documents.png and retention.png next to results.json (or into OUT_DIR).
Needs matplotlib (tools/setup.sh installs Debian's python3-matplotlib; run it with
/usr/bin/python3 if another python3 comes first on PATH).
"""
import json
import os
import sys

REFERENCES = {"closed_book": ("closed book", "gray"), "context": ("context in prompt", "black")}


def load(path):
    with open(path) as f:
        results = json.load(f)
    return results, results["curves"], results["rows"]


def references(rows):
    """F1 of the rows drawn as horizontal lines: contender key -> (label, colour, F1)."""
    out = {}
    for r in rows:
        if r["contender"] in REFERENCES and r["contender"] not in out:
            label, colour = REFERENCES[r["contender"]]
            out[r["contender"]] = (label, colour, r["scores"]["all"]["f1"])
    return out


def draw(curves, refs, curve, x_key, xlabel, ylabel, title, path, log_x):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, c in curves.items():
        points = c[curve]
        if points:
            ax.plot([p[x_key] for p in points], [p["scores"]["all"]["f1"] for p in points], "o-", label=key)
    for label, colour, f1 in refs.values():
        ax.axhline(f1, color=colour, linestyle="--", label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    out_dir = sys.argv[2] if len(sys.argv) == 3 else os.path.dirname(os.path.abspath(path))
    try:
        results, curves, rows = load(path)
    except (OSError, ValueError, KeyError) as e:
        print(f"{path}: not an engram eval results file ({e})", file=sys.stderr)
        return 2
    refs = references(rows)
    first = os.path.join(out_dir, "f1_vs_documents.png")
    draw(curves, refs, "f1_vs_documents", "documents", "documents absorbed (n)",
         "F1 on questions about them", "F1 against documents absorbed", first, True)
    early = next((c.get("retention_first_documents") for c in curves.values()), "?")
    second = os.path.join(out_dir, "retention.png")
    draw(curves, refs, "retention", "documents_seen", "documents absorbed so far",
         f"F1 on the first {early} documents", "Retention", second, False)
    print(f"wrote {first} and {second}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
