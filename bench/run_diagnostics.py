#!/usr/bin/env python3
"""The GNC paper's diagnostics through training (`make bench-diagnostics`): the demo job
(examples/demo.toml: MLP 784 → 512 → 256 → 10 on Fashion-MNIST, M = 16, b = 32, 10 epochs,
step decay ÷10 at epochs 6 and 8) trained with GNC, RNC and the baseline, each with a
`[diagnostics]` section, and the measurements drawn (PNG) and tabulated in bench/RESULTS.md:
full-gradient predictiveness (GNC Fig. 3b–c), κ of GNC's and RNC's noise (Fig. 4a), the
perturbed models' losses (Fig. 4b–c) and the smoothness indicators along the gradient (Fig. 5).

The diagnostics never change a run's bits (tests/diagnostics.rs), so each run's hash is its
diagnostics-free run's. About 5 minutes per run on one core. The runs' diagnostics records are
kept in bench/diagnostics-runs.json (committed), so `--report-only` rewrites the table from them.

κ is summarised over the weight layers only (the matrices and convolution kernels; bias vectors
and BatchNorm's affine vectors are left out: RNC's κ of a vector layer follows from its
dimension and M alone), as their median (the mean of the two middle values for an even count),
with each weight layer's κ(GNC) / κ(RNC) beside it. The figure leaves κ out: `gncctl plot`'s
kappa-gnc / kappa-rnc take the upper middle of all layers, biases included (a different number).
The perturbed losses' spreads with GNC's and RNC's noise are at the same α but not at the same
perturbation size (GNC's noise is in gradient units, RNC's a unit direction); their ratio is not a
measure of the noise's effect unless the records carry the perturbation's relative size
(`relative_norms` of each spread, where gnc writes it).

Usage: .venv/bin/python bench/run_diagnostics.py [--every 39] [--report-only]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ROOT, machine, replace_section

DEMO = ROOT / "examples" / "demo.toml"
OUT = ROOT / "bench" / "out" / "diagnostics"
STORE = ROOT / "bench" / "diagnostics-runs.json"
START, END = "<!-- diagnostics:start -->", "<!-- diagnostics:end -->"
METHODS = {
    "gnc": 'kind = "gnc"\nalpha = 0.1',
    "rnc": 'kind = "rnc"\nalpha = 0.01',
    "baseline": 'kind = "baseline"',
}
FIGURES = {
    "diagnostics-predictiveness.png": ["predictiveness", "test-accuracy"],
    # κ is not drawn: gncctl plot's kappa-gnc/kappa-rnc are the upper middle over all layers,
    # biases included, not the table's median over weight layers.
    "diagnostics-noise.png": ["perturbed-spread-gnc", "perturbed-spread-rnc"],
    "diagnostics-smoothness.png": ["loss-stability", "gradient-change", "beta-smoothness"],
}


def spec(name, method, every):
    text = DEMO.read_text()
    start = text.index("[method]")
    end = text.index("[optimizer]")
    text = text[:start] + f"[method]\n{method}\n\n" + text[end:]
    text = text.replace('name = "demo-gnc"', f'name = "diagnostics-{name}"', 1)
    text = text.replace('output_dir = "runs/demo-gnc"',
                        f'output_dir = "bench/out/diagnostics/{name}"', 1)
    text += f"\n[diagnostics]\nevery_iterations = {every}\n"
    path = OUT / f"{name}.toml"
    path.write_text("# Written by bench/run_diagnostics.py from examples/demo.toml\n" + text)
    return path


def train(name, path):
    out = OUT / name
    began = time.time()
    proc = subprocess.run([str(ROOT / "target/release/gncctl"), "run", str(path), "--json",
                           "--out", str(out), "--threads", "1"],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{name}: gncctl run failed:\n{proc.stderr[-3000:]}")
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return {"name": name, "result": json.loads(proc.stdout), "minutes": (time.time() - began) / 60,
            "diagnostics": [r for r in records if r["kind"] == "diagnostics"]}


def is_weight_layer(name):
    """A weight matrix or convolution kernel (contract/src/architecture.rs names them
    `<layer>.weight`); not a bias vector nor BatchNorm's affine `<layer>.bn.weight`."""
    return name.endswith(".weight") and ".bn." not in name


def median_kappa(layers):
    """The median κ over the weight layers (the mean of the two middle values for an even
    count), the one definition of the table and the reading."""
    kappas = [l["kappa"] for l in layers if is_weight_layer(l["layer"])]
    return statistics.median(kappas) if kappas else float("nan")


def kappa_ratios(anisotropy):
    """Each weight layer's κ(GNC noise) / κ(RNC noise) at one measurement."""
    rnc = {l["layer"]: l["kappa"] for l in anisotropy["rnc"]}
    return {l["layer"]: l["kappa"] / rnc[l["layer"]] for l in anisotropy["gnc"]
            if is_weight_layer(l["layer"]) and rnc.get(l["layer"])}


def spread(spreads):
    """The mean std of the perturbed losses over a phase's measurements, with the mean relative
    size of the perturbations ‖x_i − x‖ / ‖x‖ where the records carry it."""
    if not spreads:
        return "—"
    text = f"{mean(s['std'] for s in spreads):.2e}"
    sizes = [mean(s["relative_norms"]) for s in spreads if s.get("relative_norms")]
    return text + (f" (size {mean(sizes):.1e})" if sizes else "")


def mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else float("nan")


def table(runs, per_epoch):
    """Means over the measurements in each phase of the schedule (epochs [0, 6), [6, 8),
    [8, 10): the rate's three levels)."""
    phases = [(0, 6), (6, 8), (8, 10)]
    head = ["run", "epochs", "measurements", "predictiveness cos(∇L, g̃)", "loss range",
            "largest ‖Δg̃‖", "β-smoothness", "median κ over weight layers, GNC noise",
            "median κ over weight layers, RNC noise", "κ(GNC) / κ(RNC) per weight layer",
            "std of perturbed losses, GNC noise / RNC noise (different sizes)", "test acc."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        for lo, hi in phases:
            ds = [d for d in run["diagnostics"] if lo * per_epoch <= d["iter"] < hi * per_epoch]
            kg = [median_kappa(d["anisotropy"]["gnc"]) for d in ds if "anisotropy" in d]
            kr = [median_kappa(d["anisotropy"]["rnc"]) for d in ds if "anisotropy" in d]
            ratios = {}
            for d in ds:
                for layer, r in (kappa_ratios(d["anisotropy"]) if "anisotropy" in d else {}).items():
                    ratios.setdefault(layer, []).append(r)
            pg = [d["perturbed"]["gnc"] for d in ds
                  if "perturbed" in d and "gnc" in d["perturbed"]]
            pr = [d["perturbed"]["rnc"] for d in ds if "perturbed" in d]
            fmt = lambda v, f: "—" if v != v else f.format(v)
            cells = [run["name"], f"{lo}–{hi}", str(len(ds)),
                     fmt(mean(d["predictiveness"] for d in ds), "{:.3f}"),
                     fmt(mean(d["smoothness"]["loss_range"] for d in ds), "{:.4f}"),
                     fmt(mean(d["smoothness"]["gradient_change_range"][1] for d in ds), "{:.3f}"),
                     fmt(mean(d["smoothness"]["beta"] for d in ds), "{:.2f}"),
                     fmt(mean(kg), "{:.1f}"), fmt(mean(kr), "{:.2f}"),
                     ", ".join(f"{layer.removesuffix('.weight')} {mean(rs):.1f}"
                               for layer, rs in ratios.items()) or "—",
                     f"{spread(pg)} / {spread(pr)}",
                     f"{100 * run['result']['test_accuracy']:.2f} %" if (lo, hi) == (8, 10) else ""]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--every", type=int, default=39, help="measure every N iterations")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing; rewrite the RESULTS.md section from bench/diagnostics-runs.json")
    args = p.parse_args()
    if args.report_only:
        if not STORE.exists():
            sys.exit(f"{STORE} does not exist: run without --report-only first")
        stored = json.loads(STORE.read_text())
        runs, args.every, date = stored["runs"], stored["every"], stored["date"]
        machine_text = stored["machine"]
    else:
        OUT.mkdir(parents=True, exist_ok=True)
        runs = []
        for name, method in METHODS.items():
            run = train(name, spec(name, method, args.every))
            print(f"{name}: {len(run['diagnostics'])} measurements, {run['minutes']:.1f} min",
                  flush=True)
            runs.append(run)
        date, machine_text = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), machine()
        STORE.write_text(json.dumps({"date": date, "machine": machine_text, "every": args.every,
                                     "runs": runs}) + "\n")
        for figure, metrics in FIGURES.items():
            command = [str(ROOT / "target/release/gncctl"), "plot",
                       *[str(OUT / r["name"]) for r in runs], "-o", str(ROOT / "bench" / figure),
                       "--x", "epoch"]
            for m in metrics:
                command += ["--metric", m]
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    per_epoch = 117  # 60,000 / 512
    sizes = ("" if any(d["perturbed"]["rnc"].get("relative_norms") for r in runs
                       for d in r["diagnostics"] if "perturbed" in d)
             else " (the records do not carry the perturbations' sizes)")
    figures = "\n".join(f"![{', '.join(m)}]({f})" for f, m in FIGURES.items())
    section = f"""{START}
## The GNC paper's diagnostics through training (`make bench-diagnostics`)

{date}; {machine_text}. The demo job
(`examples/demo.toml`: MLP 784 → 512 → 256 → 10, Fashion-MNIST, M = 16, b = 32, B = 512,
10 epochs, ÷10 at epochs 6 and 8) with GNC (α = 0.1), RNC (α = 0.01) and the baseline, each
with `[diagnostics] every_iterations = {args.every}` (full gradient over 10,000 training
examples, perturbed losses over 512, eight smoothness steps in [η/2, 2η]). Means over the
measurements within each of the schedule's three rates. κ over the weight layers only (bias
vectors left out: RNC's κ of a vector follows from its dimension and M alone), their median and
each weight layer's κ(GNC) / κ(RNC) at the same iteration. The perturbed losses' spreads are at
the same α but not the same perturbation size (GNC's noise is in gradient units, RNC's a unit
direction per filter), so their ratio does not compare the noises' effect{sizes}:

{table(runs, per_epoch)}

{figures}

Runs (final hash; the same as without diagnostics):
{chr(10).join(f"- {r['name']}: `{r['result']['params_sha256'][:12]}`, {r['minutes']:.1f} min with diagnostics" for r in runs)}
{END}
"""
    replace_section(START, END, section)
    print(f"wrote {ROOT / 'bench/RESULTS.md'}")


if __name__ == "__main__":
    main()
