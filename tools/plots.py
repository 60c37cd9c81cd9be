"""The plots, drawn from parsed logs (tools/logformat.py): an experiment's compare.png and a track's
records/<track>.png. Deterministic: the same logs give the same PNG bytes."""

import os

import numpy as np


def _pyplot():
    import matplotlib  # imported when a plot is drawn: it costs a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ema(points, steps):
    """(step, loss, time_ms) points smoothed by an exponential moving average over about `steps`
    steps, bias-corrected so that it starts at the first loss: [(step, smoothed loss, time_ms)]."""
    beta, avg, out = 1 - 1 / max(steps, 1), 0.0, []
    for k, (step, loss, t) in enumerate(points, 1):
        avg = beta * avg + (1 - beta) * loss
        out.append((step, avg / (1 - beta**k), t))
    return out


def curves(runs):
    """What a plot draws of the runs of one script, as (seconds, loss): their mean train loss,
    smoothed over ~10% of the steps, at their mean time of each step; their evaluations after step 0
    (the untrained ~10.8 would only squash the axis); and the losses of both in the later half of
    the runs, where a plot's y axis should tell scripts apart. The runs share their step count."""
    n = min(len(r["train"]) for r in runs)
    mean = [tuple(np.mean([r["train"][i][k] for r in runs]) for k in range(3)) for i in range(n)]
    train = [p for p in _ema(mean, runs[0]["total"] / 10) if p[2] > 0]
    val = [p for r in runs for p in r["vals"] if p[0] > 0]
    later = [y for step, y, _ in train + val if step > runs[0]["total"] / 2]
    return [(t / 1000, y) for _, y, t in train], [(t / 1000, y) for _, y, t in val], later


def y_range(drawn):
    """The y limits for curves() of several runs: from the lowest loss drawn to the highest of the
    runs' later halves, 5% margin."""
    lows = [y for train, val, _ in drawn for _, y in train + val]
    lo, hi = min(lows), max([y for _, _, later in drawn for y in later] or lows)
    pad = 0.05 * (hi - lo) or 0.05
    return lo - pad, hi + pad


def save_png(fig, path):
    """fig as an 8-bit palette PNG (32 colours: a tenth of the bytes, which git keeps forever), the
    same bytes for the same data: no metadata is written."""
    from PIL import Image  # matplotlib's own dependency

    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    rgb.quantize(colors=32, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)


def comparison(arms, results, path):
    """Loss against training time, one colour per arm: its runs' mean train loss, smoothed (a line),
    and each run's evaluations (dots); the y axis on where the arms differ (see curves)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    colors = (
        [f"C{k}" for k in range(10)]
        if len(arms) <= 10
        else [plt.cm.tab20(k % 20) for k in range(len(arms))]
    )
    drawn = []
    for k, (name, _) in enumerate(arms):
        if results.get(name):
            train, val, later = curves(results[name])
            ax.plot(*zip(*train), color=colors[k], lw=1.5, label=name)
            ax.plot(*zip(*val), "o", color=colors[k], ms=4)
            drawn.append((train, val, later))
    ax.set_ylim(*y_range(drawn))
    ax.set(xlabel="training time (s)", ylabel="loss (lines: train, smoothed; dots: val)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    longest = max(len(name) for name, _ in arms)  # the legend's width: ~6 px a character at 8 pt
    fig.subplots_adjust(left=0.08, right=min(0.78, 1 - (60 + 6.2 * longest) / 800))
    save_png(fig, path)
    plt.close(fig)


def records(results, targets, records_dir):
    """records/<track>.png for every track with records (verify.check_all's results): val loss
    against training time on a log axis, so that a 1-minute and a 12-minute record both read; one
    line per run, one colour per record (dashed: the previous script's runs beside it), the y axis
    on the later halves of the runs, the target as a line."""
    plt = _pyplot()
    for track in sorted({r["track"] for r in results if r["runs"] and not r["retired"]}):
        rows = [r for r in results if r["track"] == track and r["runs"] and not r["retired"]]
        fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
        drawn = []
        for k, r in enumerate(rows):
            for style, label, runs in (
                ("o-", r["name"], r["runs"]),
                ("o--", f"{r['name']}: previous, beside it", r["previous"]),
            ):
                for j, run in enumerate(runs):
                    # Step 0 is the untrained model (~10.8 for every run): it would squash the axis.
                    val = [(t / 1000, y) for step, y, t in run["vals"] if step > 0]
                    later = [y for step, y, _ in run["vals"] if step > run["total"] / 2]
                    ax.plot(
                        *zip(*val),
                        style,
                        color=f"C{k % 10}",
                        lw=1,
                        ms=3,
                        label=label if j == 0 else None,
                    )
                    drawn.append(([], val, later))
        if targets.get(track) is not None:
            ax.axhline(targets[track], color="k", ls=":", lw=1, label=f"target {targets[track]}")
        ax.set_xscale("log")
        ax.set_ylim(*y_range(drawn))
        ax.set(xlabel="training time (s, log scale)", ylabel="val loss", title=track)
        ax.grid(alpha=0.3, which="both")
        fig.subplots_adjust(bottom=0.26)
        fig.legend(
            *ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False
        )
        save_png(fig, os.path.join(records_dir, f"{track}.png"))
        plt.close(fig)
