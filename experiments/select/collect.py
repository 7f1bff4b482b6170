"""Collect experiments/select/runs/*/selection.json into experiments/results/select.json and print a summary.

    python experiments/select/collect.py
"""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
KEEP = ("model", "k", "heldout_ll", "ll_diff", "diff_se", "paired_se", "restart_sd", "mc_se", "stability",
        "stability_se", "effective_components", "clusters_used", "ari_labels")


def main():
    out = {}
    for path in sorted((ROOT / "runs").glob("*/selection.json")):
        sel = json.loads(path.read_text())
        best = max(sel["table"], key=lambda r: r["heldout_ll"])
        out[path.parent.name] = {"command": sel["command"], "chosen_k": sel["chosen"]["k"],
                                 "chosen_model": sel["chosen"]["model"], "best_heldout_ll_k": best["k"],
                                 "reason": sel["reason"], "heldout_points": sel["heldout_points"],
                                 "table": [{k: r[k] for k in KEEP if k in r} for r in sel["table"]]}
        stab = max(sel["table"], key=lambda r: r["stability"])
        print(f"{path.parent.name:28s} chosen K={sel['chosen']['k']:<3} best held-out ll K={best['k']:<3} "
              f"most stable K={stab['k']} ({stab['stability']:.3f})")
    target = ROOT.parent / "results" / "select.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
