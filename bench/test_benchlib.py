#!/usr/bin/env python3
"""Checks of bench/benchlib.py's statistics against known values (no test framework needed):
.venv/bin/python bench/test_benchlib.py"""

import contextlib
import io
import json
import math
import statistics
import tempfile
from pathlib import Path

import benchlib
from benchlib import (b_simple_by_phase, diagnostic_metrics, diverged_fields, fieller,
                      gncctl_plot, mean_interval, outcome, t_cdf, t_quantile, t95, welch)


def close(a, b, tol):
    assert abs(a - b) <= tol, (a, b)


def test_t_quantiles():
    # Tables of Student's t, two-sided 95 %.
    for df, t in [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (5, 2.5706),
                  (9, 2.2622), (10, 2.2281), (11, 2.2010), (20, 2.0860), (30, 2.0423),
                  (100, 1.9840), (1000, 1.9623)]:
        close(t95(df), t, 5e-4)
    # The brief's values at three decimals.
    assert (round(t95(2), 3), round(t95(4), 3), round(t95(10), 3), round(t95(30), 3)) == \
        (4.303, 2.776, 2.228, 2.042)
    # Other quantiles; df = 1 is Cauchy: tan(π (p − ½)).
    close(t_quantile(0.95, 5), 2.0150, 5e-4)
    close(t_quantile(0.995, 3), 5.8409, 5e-4)
    close(t_quantile(0.9, 1), math.tan(math.pi * 0.4), 1e-9)
    close(t_quantile(0.025, 4), -2.7764, 5e-4)
    # Towards the normal: z(0.975) = 1.959964.
    close(t95(1e7), 1.959964, 1e-5)
    # Non-integer df (Welch): between its integer neighbours; the cdf inverts the quantile.
    assert t95(3) < t95(2.4) < t95(2)
    close(t_cdf(t95(2.4), 2.4), 0.975, 1e-10)
    close(t_cdf(0.0, 7), 0.5, 1e-12)


def test_intervals():
    m, half = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    close(m, 3.0, 1e-12)
    close(half, 2.7764 * statistics.stdev([1, 2, 3, 4, 5]) / 5 ** 0.5, 1e-3)
    # Welch: equal variances and sizes give df = 2(n − 1).
    diff, half, df = welch(1.0, 2.0, 5, 0.0, 2.0, 5)
    close(df, 8.0, 1e-12)
    close(half, 2.3060 * math.sqrt(0.8 + 0.8), 1e-3)
    # Fieller: a ratio of exactly proportional pairs has a zero-width interval at the ratio;
    # with noise the interval holds the point estimate; an unresolved denominator: unbounded.
    den = [1.0, 1.1, 0.9, 1.05, 0.95]
    r, lo, hi = fieller([2 * d for d in den], den)
    close(r, 2.0, 1e-12)
    close(lo, 2.0, 1e-9)
    close(hi, 2.0, 1e-9)
    r, lo, hi = fieller([0.1, 0.3, 0.2, 0.0], [1.0, 1.2, 0.9, 1.1])
    assert lo < r < hi
    assert fieller([1.0, 2.0, 3.0], [1.0, -1.0, 0.5])[1] is None


def test_outcomes():
    assert outcome(0, "") == "done"
    assert outcome(1, "error: training diverged at iteration 18: loss is NaN; ...") == "diverged"
    assert outcome(1, "error: no such file") is None
    iters = [{"iter": i} for i in range(5)]
    row = diverged_fields(iters, [{"test_accuracy": 0.5, "test_loss": 1.5}])
    assert row["diverged_at"] == 5 and row["test_accuracy"] == 0.5 and not row["no_evaluation"]
    row = diverged_fields(iters, [])
    assert row["test_accuracy"] == 0.1 and row["no_evaluation"]


def test_b_simple():
    # |G|² 1 and 3 alternating, tr(Σ) 8: B_simple 4 over any even number of records; records
    # without the estimates are left out.
    iters = [{"epoch": i / 10, "grad_sq_estimate": 1.0 if i % 2 == 0 else 3.0,
              "trace_estimate": 8.0} for i in range(20)]
    iters.append({"epoch": 0.55})
    phases = b_simple_by_phase(iters, [0, 1, 2, 3])
    assert [p["b_simple"] for p in phases] == [4.0, 4.0, None]
    assert [p["iterations"] for p in phases] == [10, 10, 0]



def test_diagnostic_metrics():
    # gncctl plot refuses a metric no run has: only those some record carries, finite (NaN is
    # stored as null), in gncctl's order.
    records = [
        {"kind": "iter", "iter": 0, "loss": 2.3},
        {"kind": "diagnostics", "iter": 0, "predictiveness": 0.9,
         "smoothness": {"loss_range": 0.4, "gradient_change_range": [1.0, 7.0], "beta": None},
         "perturbed": {"unperturbed": 2.7, "rnc": {"std": 0.01}}},
        {"kind": "diagnostics", "iter": 28, "predictiveness": 0.5,
         "smoothness": {"loss_range": 0.1, "gradient_change_range": [0.5, 2.0], "beta": None},
         "anisotropy": {"gnc": [{"kappa": 3.5}], "rnc": []},
         "perturbed": {"unperturbed": 0.5, "gnc": {"std": 0.02}, "rnc": {"std": 0.03}}},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        assert diagnostic_metrics([tmp, Path(tmp) / "absent"]) == [
            "predictiveness", "loss-stability", "gradient-change", "kappa-gnc",
            "perturbed-spread-gnc", "perturbed-spread-rnc"]
        assert diagnostic_metrics([Path(tmp) / "absent"]) == []


def test_gncctl_plot_failure_is_reported_not_raised():
    # A report goes on without its figure: a failing or missing gncctl is a False and a line on
    # stderr.
    saved = benchlib.GNCCTL
    try:
        for gncctl in ("/bin/false", "/nonexistent/gncctl"):
            benchlib.GNCCTL = Path(gncctl)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                assert gncctl_plot(["run"], ["test-accuracy"], "/tmp/x.png") is False
            assert "gncctl plot failed" in err.getvalue()
    finally:
        benchlib.GNCCTL = saved


if __name__ == "__main__":
    for name, test in list(globals().items()):
        if name.startswith("test_"):
            test()
            print(f"{name}: ok")
