#!/usr/bin/env python3
"""Draws the curves of `engram mac-eval` (results.json): F1 against bank size, and retention.

usage: tools/plot_mac.py RUN/eval/results.json [OUT_DIR]
Writes f1_vs_bank_size.png and retention.png next to results.json (or into OUT_DIR).
Needs matplotlib (tools/setup.sh installs Debian's python3-matplotlib; run it with
/usr/bin/python3 if another python3 comes first on PATH).
"""
import json
import os
import sys


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    out_dir = sys.argv[2] if len(sys.argv) == 3 else os.path.dirname(os.path.abspath(path))
    try:
        with open(path) as f:
            results = json.load(f)
        sizes = results["f1_vs_bank_size"]
        retention = results["retention"]
    except (OSError, ValueError, KeyError) as e:
        print(f"{path}: not an engram mac-eval results file ({e})", file=sys.stderr)
        return 2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed_book = next((r["scores"]["all"]["f1"] for r in results.get("rows", [])
                        if r["method"].startswith("base LM")), None)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p["bank_size"] for p in sizes], [p["scores"]["all"]["f1"] for p in sizes], "o-", label="MAC")
    if closed_book is not None:
        ax.axhline(closed_book, color="gray", linestyle="--", label="closed book")
    ax.set_xscale("log")
    ax.set_xlabel("documents in the memory bank (N)")
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1)
    ax.set_title("F1 against bank size")
    ax.legend()
    fig.tight_layout()
    first = os.path.join(out_dir, "f1_vs_bank_size.png")
    fig.savefig(first, dpi=120)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p["documents_seen"] for p in retention], [p["scores"]["all"]["f1"] for p in retention], "o-",
            label="MAC")
    if closed_book is not None:
        ax.axhline(closed_book, color="gray", linestyle="--", label="closed book")
    ax.set_xlabel("documents memorized so far")
    ax.set_ylabel(f"F1 on the first {results.get('retention_first_documents', '?')} documents")
    ax.set_ylim(0, 1)
    ax.set_title("Retention")
    ax.legend()
    fig.tight_layout()
    second = os.path.join(out_dir, "retention.png")
    fig.savefig(second, dpi=120)
    print(f"wrote {first} and {second}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
