"""The statistics, in one place: mean and spread of runs, the t-tests, and how numbers are printed.

A claim (a record) is a one-sided one-sample t-test of its runs' final val losses against the
track's target (claim_p) and, for a record that beats a previous script, a one-sided Welch t-test of
its training times against those of the previous script's runs beside it (faster_p); a comparison
(tools/compare.py, an experiment's README table) is Welch's two-sided t-test of each arm against
the first, for loss and for time (welch_p, summary). A p-value that decides a verdict prints with
fmt_p, which shows as many digits as the verdict needs.
"""

import math
import warnings

import numpy as np
from scipy import stats as scipy_stats


def _mean(xs):
    return float(np.mean(xs)) if xs else math.nan


def _std(xs):
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan


def stats_of(runs):
    """(mean, std) of the final val loss and of the training seconds over parsed logs; nan where
    undefined."""
    losses = [r["val_loss"] for r in runs]
    times = [r["train_time_ms"] / 1000 for r in runs]
    return _mean(losses), _std(losses), _mean(times), _std(times)


def claim_p(losses, target):
    """The one-sided one-sample t-test's p-value, H1: the mean loss is below target (nan when the
    losses are identical)."""
    with warnings.catch_warnings():  # identical losses give nan with a warning
        warnings.simplefilter("ignore")
        return float(scipy_stats.ttest_1samp(losses, target, alternative="less").pvalue)


def welch_p(runs, base, key):
    """Welch's two-sided t-test p-value of runs[key] against base[key]."""
    with warnings.catch_warnings():  # identical values give nan with a warning
        warnings.simplefilter("ignore")
        a, b = [r[key] for r in runs], [r[key] for r in base]
        return float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def faster_p(runs, previous):
    """The one-sided Welch t-test's p-value, H1: the mean training time of runs (parsed logs) is
    below that of previous. nan with fewer than 2 runs on a side, or no spread on either."""
    with warnings.catch_warnings():  # identical values give nan with a warning
        warnings.simplefilter("ignore")
        a = [r["train_time_ms"] for r in runs]
        b = [r["train_time_ms"] for r in previous]
        if len(a) < 2 or len(b) < 2:
            return math.nan
        return float(scipy_stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue)


def fmt_p(p, threshold):
    """p with the fewest significant digits (2 at least) whose printed number lies on the same side
    of threshold as p does: 0.0101 against 0.01 prints 0.0101, not 0.01; 0.00996 prints 0.00996."""
    if p is None or math.isnan(p):
        return "nan"
    for digits in range(2, 18):
        shown = format(p, f".{digits}g")
        if (float(shown) > threshold) == (p > threshold) and (float(shown) < threshold) == (
            p < threshold
        ):
            return shown
    return repr(p)


def fmt(x, spec):
    return "nan" if x is None or math.isnan(x) else format(x, spec)


def fmt_time(mean, std):
    """Seconds in human units, the unit chosen from the mean."""
    if math.isnan(mean):
        return "-"
    unit, div = ("s", 1) if mean < 120 else ("min", 60) if mean < 7200 else ("h", 3600)
    spec = ".1f" if unit == "s" else ".2f"
    return f"{fmt(mean / div, spec)} ± {fmt(std / div, spec)} {unit}"


def _or_dash(x, spec):
    return "-" if math.isnan(x) else format(x, spec)


def summary(arms, results):
    """The table of a comparison: one line per arm (arms: (name, ...) pairs; results: name -> parsed
    runs) with mean ± std of loss and time, tokens/s, peak memory, Welch p against the first arm."""
    lines = [
        f"{'arm':<16} {'n':>2}  {'val loss':<17} {'p(loss)':>8}  {'time (s)':<15} {'p(time)':>8}  "
        f"{'tokens/s':>9}  {'peak MiB':>8}"
    ]
    base = results.get(arms[0][0], [])
    for name, _ in arms:
        runs = results.get(name, [])
        if not runs:
            lines.append(f"{name:<16} {0:>2}  no finished runs")
            continue
        loss, loss_std, secs, secs_std = stats_of(runs)
        p_loss = p_time = "-"
        if name != arms[0][0] and len(runs) > 1 and len(base) > 1:
            p_loss = f"{welch_p(runs, base, 'val_loss'):.2g}"
            p_time = f"{welch_p(runs, base, 'train_time_ms'):.2g}"
        tokens_per_s = np.mean([r["tokens_per_s"] for r in runs])
        peak = max(r["peak_mib"] for r in runs)
        lines.append(
            f"{name:<16} {len(runs):>2}  {loss:.4f} ± {_or_dash(loss_std, '.4f'):<8} {p_loss:>8}  "
            f"{secs:7.1f} ± {_or_dash(secs_std, '.1f'):<5} {p_time:>8}  "
            f"{tokens_per_s:9.0f}  {peak:8d}"
        )
    return "\n".join(lines)
