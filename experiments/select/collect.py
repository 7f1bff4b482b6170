"""Collect experiments/select/runs/*/selection.json into experiments/results/select.json, and
experiments/results/select.md (results_header.md, then one table per run); print a summary.
The run directories are not kept between sessions: a record of select.json whose run is no longer
here is kept as it is.

    python experiments/select/collect.py
"""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
KEEP = ("model", "k", "heldout_ll", "ll_diff", "diff_se", "paired_se", "restart_sd", "mc_se", "stability",
        "stability_se", "effective_components", "clusters_used", "ari_labels")


def main():
    target = ROOT.parent / "results" / "select.json"
    out = json.loads(target.read_text()) if target.exists() else {}
    for path in sorted((ROOT / "runs").glob("*/selection.json")):
        sel = json.loads(path.read_text())
        best = max(sel["table"], key=lambda r: r["heldout_ll"])
        out[path.parent.name] = {"command": sel["command"], "chosen_k": sel["chosen"]["k"],
                                 "chosen_model": sel["chosen"]["model"], "best_heldout_ll_k": best["k"],
                                 "reason": sel["reason"], "heldout_points": sel["heldout_points"],
                                 "table": [{k: r[k] for k in KEEP if k in r} for r in sel["table"]]}
        stab = max(sel["table"], key=lambda r: r["stability"])
        out[path.parent.name]["most_stable_k"] = f"{stab['k']} ({stab['stability']:.3f})"
        print(f"{path.parent.name:28s} chosen K={sel['chosen']['k']:<3} best held-out ll K={best['k']:<3} "
              f"most stable K={stab['k']} ({stab['stability']:.3f})")
    out = dict(sorted(out.items()))
    target.write_text(json.dumps(out, indent=1) + "\n")
    md = ROOT.parent / "results" / "select.md"
    rows = "\n".join(f"| {n} | {r['chosen_k']} | {r['best_heldout_ll_k']} | {r['most_stable_k']} |" for n, r in out.items())
    header = (ROOT / "results_header.md").read_text().replace("SUMMARY_ROWS", rows)
    md.write_text(header + "".join(_table(n, r) for n, r in out.items()))
    print(f"wrote {target} and {md}")


def _table(name: str, run: dict) -> str:
    eff = any("effective_components" in r for r in run["table"])
    lines = ["", f"### {name}", "", f"`{run['command']}`", "",
             f"Chosen K = {run['chosen_k']}; the best held-out log-likelihood is at K = {run['best_heldout_ll_k']}.",
             f"{run['heldout_points']} held-out points. Rule's reason: {run['reason']}", "",
             "| K | held-out log p(x) | below the best (+- SE) | stability (ARI of restarts) | clusters used | "
             + ("effective components | " if eff else "") + "ARI vs labels (not used) |",
             "| --- | --- | --- | --- | --- | " + ("--- | " if eff else "") + "--- |"]
    for r in run["table"]:
        mark = " (chosen)" if r["k"] == run["chosen_k"] else ""
        lines.append(f"| {r['k']}{mark} | {r['heldout_ll']:.3f} | {r['ll_diff']:.3f} +- {r['diff_se']:.3f} | "
                     f"{r['stability']:.3f} +- {r['stability_se']:.3f} | {r['clusters_used']:.2f} | "
                     + (f"{r['effective_components']:.2f} | " if eff else "") + f"{r.get('ari_labels', float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
