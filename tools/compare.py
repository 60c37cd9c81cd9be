#!/usr/bin/env python3
"""Run a base script and its forks side by side, alternated, and compare them.

    python tools/compare.py -n 3 --arm "base=train_gpt.py --track=cpu_shakespeare" \
                                 --arm "fork=my_fork.py --track=cpu_shakespeare" [--out logs/compare]

Each --arm is NAME=SCRIPT [--name=value ...]; the same script with other settings is an arm too (a
sweep). Round i runs every arm once, in order (A, B, A, B, ...: never two at once, so the machine's
drift hits all arms alike), each with --seed=SEED+i, the same seeds for every arm. A line is printed
per finished run and appended to OUT/runs.tsv, so Ctrl-C keeps every finished run (the running one
gets SIGINT, so its log says where it stopped; exit 130). A failed run prints its last 5 output
lines (exit 1). At the end (or on Ctrl-C) it prints, per arm: final val loss and training time
(mean ± std), tokens/s, peak memory, and Welch's t-test p-value against the first arm for loss and
for time; and draws OUT/compare.png.

--freeze experiments/<YYYY-MM-DD>_<Name> keeps the result: each arm's script (taken from its first
log, so it is exactly what ran) and unedited logs in <arm>/, arms.tsv, the table in README.md (to
be completed with what was changed and why) and the plot. tools/check.py verifies such a folder.
A set that was interrupted or had a failed run is not frozen.
"""
import argparse
import collections
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402

END_RE = re.compile(r"^peak_memory:(\d+)MiB tokens_seen:\d+ tokens_per_s:(\d+)", re.M)


def parse_arm(text):
    name, sep, command = text.partition("=")
    words = shlex.split(command)
    if not sep or not name or not words or not words[0].endswith(".py"):
        raise ValueError(f"--arm {text!r}: expected NAME=SCRIPT.py [--name=value ...]")
    return name, words


def run_once(words, seed, workdir, tail_lines=5):
    """Runs one training; returns the path of its log (None if it failed), its exit code and its last
    output lines. Ctrl-C stops the child as a terminal's would, with SIGINT, so it logs where it
    stopped; one that has not exited after 30 s (or a second Ctrl-C) is killed."""
    cmd = [sys.executable, *words, f"--seed={seed}"]
    log, tail = None, collections.deque(maxlen=tail_lines)
    # In its own process group, so a terminal's Ctrl-C reaches the child once, from here, not twice.
    proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", process_group=0)
    try:
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            if line.startswith("log: ") and log is None:
                log = os.path.join(workdir, line[len("log: "):].strip())
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.kill()
            proc.wait()
        raise
    return (log if proc.wait() == 0 else None), proc.returncode, list(tail)


def summary(arms, results):
    """One line per arm: mean ± std of loss and time, tokens/s, memory, Welch p against the first arm."""
    lines = [f"{'arm':<16} {'n':>2}  {'val loss':<17} {'p(loss)':>8}  {'time (s)':<15} {'p(time)':>8}  "
             f"{'tokens/s':>9}  {'peak MiB':>8}"]
    base = results.get(arms[0][0], [])
    for name, _ in arms:
        runs = results.get(name, [])
        if not runs:
            lines.append(f"{name:<16} {0:>2}  no finished runs")
            continue
        loss, loss_std, secs, secs_std = check.stats_of(runs)
        p_loss = p_time = "-"
        if name != arms[0][0] and len(runs) > 1 and len(base) > 1:
            welch = lambda key: stats.ttest_ind([r[key] for r in runs], [r[key] for r in base], equal_var=False).pvalue
            p_loss, p_time = f"{welch('val_loss'):.2g}", f"{welch('train_time_ms'):.2g}"
        std = lambda x, spec: "-" if math.isnan(x) else format(x, spec)
        lines.append(f"{name:<16} {len(runs):>2}  {loss:.4f} ± {std(loss_std, '.4f'):<8} {p_loss:>8}  "
                     f"{secs:7.1f} ± {std(secs_std, '.1f'):<5} {p_time:>8}  "
                     f"{np.mean([r['tokens_per_s'] for r in runs]):9.0f}  {max(r['peak_mib'] for r in runs):8d}")
    return "\n".join(lines)


def plot(arms, results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = [f"C{k}" for k in range(10)] if len(arms) <= 10 else [plt.cm.tab20(k % 20) for k in range(len(arms))]
    for k, (name, _) in enumerate(arms):
        for j, r in enumerate(results.get(name, [])):
            train = [(int(m[7]) / 1000, float(m[4])) for m in map(check.STEP_RE.fullmatch, r["steps"]) if m[4]]
            val = [(t / 1000, loss) for step, loss, t in r["vals"] if step > 0]
            ax.plot(*zip(*train), color=colors[k], lw=0.5, alpha=0.4)
            ax.plot(*zip(*val), "o-", color=colors[k], lw=1, ms=3, label=name if j == 0 else None)
    ax.set(xlabel="training time (s)", ylabel="loss (lines: train, dots: val)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def freeze(folder, arms, results, table):
    """The experiment folder: <arm>/train_gpt.py and its logs, arms.tsv, README.md, compare.png."""
    os.makedirs(folder)
    with open(os.path.join(folder, "arms.tsv"), "w") as f:
        f.writelines(f"{name}\t{shlex.join(words)}\n" for name, words in arms)
    for name, _ in arms:
        os.makedirs(os.path.join(folder, name))
        runs = results.get(name, [])
        if runs:  # the script of the arm's first log; the checker verifies that every log embeds it
            with open(os.path.join(folder, name, "train_gpt.py"), "w", encoding="utf-8", newline="") as f:
                f.write(runs[0]["source"])
        for r in runs:
            shutil.copyfile(r["log"], os.path.join(folder, name, os.path.basename(r["log"])))
    plot(arms, results, os.path.join(folder, "compare.png"))
    with open(os.path.join(folder, "README.md"), "w") as f:
        f.write(f"# {os.path.basename(os.path.normpath(folder))}\n\n## What was changed and why\n\nTODO\n\n"
                f"## Results\n\nArms (the first is the base): {', '.join(n for n, _ in arms)}; commands in arms.tsv.\n\n"
                f"```text\n{table}\n```\n\n![loss against training time](compare.png)\n")


def load(log):
    run = check.read_log(log)
    end = END_RE.search(open(log).read())
    run.update(log=log, peak_mib=int(end[1]) if end else 0, tokens_per_s=int(end[2]) if end else 0)
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arm", action="append", required=True, help="NAME=SCRIPT.py [--name=value ...]; the first is the base")
    ap.add_argument("-n", "--runs", type=int, default=3, help="runs per arm (default 3)")
    ap.add_argument("--seed", type=int, default=1, help="round i uses seed SEED+i in every arm (default 1)")
    ap.add_argument("--out", default="logs/compare", help="folder for runs.tsv and compare.png")
    ap.add_argument("--workdir", default=".", help="where the scripts run (their data paths are relative to it)")
    ap.add_argument("--freeze", metavar="DIR", help="keep the result as an experiment folder (experiments/<date>_<Name>)")
    args = ap.parse_args(argv)
    try:
        arms = [parse_arm(a) for a in args.arm]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len({name for name, _ in arms}) != len(arms):
        print("error: two arms share a name", file=sys.stderr)
        return 2
    if args.runs < 1:
        print(f"error: -n {args.runs}: runs per arm must be at least 1", file=sys.stderr)
        return 2
    if not os.path.isdir(args.workdir):
        print(f"error: --workdir {args.workdir}: no such folder", file=sys.stderr)
        return 2
    for name, words in arms:  # a typo in a path fails here, before hours of the other arms' runs
        if not os.path.isfile(os.path.join(args.workdir, words[0])):
            print(f"error: --arm {name}: script {words[0]} not found in --workdir {args.workdir} "
                  f"(paths are relative to it)", file=sys.stderr)
            return 2
    if args.freeze and os.path.exists(args.freeze):
        print(f"error: --freeze {args.freeze} already exists", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    results, failed, interrupted = {}, 0, False
    with open(os.path.join(args.out, "runs.tsv"), "a", buffering=1) as tsv:
        try:
            for i in range(args.runs):
                for name, words in arms:
                    seed = args.seed + i
                    log, code, tail = run_once(words, seed, args.workdir)
                    try:
                        r = None if log is None else load(log)
                    except check.LogError as e:
                        r, tail = None, [f"{log}: {e}"]
                    if r is None:
                        failed += 1
                        how = f"killed by signal {-code}" if code < 0 else f"failed with exit code {code}"
                        print(f"[{name} seed {seed}] {how}"
                              + ("; its last output lines:" if tail else "; it printed nothing"), flush=True)
                        print("".join(f"    {line}\n" for line in tail), end="", flush=True)
                        continue
                    results.setdefault(name, []).append(r)
                    tsv.write(f"{name}\t{seed}\t{log}\t{r['val_loss']:.4f}\t{r['train_time_ms']}\n")
                    print(f"[{name} seed {seed}] val_loss {r['val_loss']:.4f}  train_time "
                          f"{r['train_time_ms'] / 1000:.1f}s  {log}", flush=True)
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted: the finished runs above are kept", flush=True)
    table = summary(arms, results)
    print(table)
    if any(results.values()):
        plot(arms, results, os.path.join(args.out, "compare.png"))
    if args.freeze and (interrupted or failed):  # a frozen experiment holds every run it asked for
        counts = ", ".join(f"{name} {len(results.get(name, []))}" for name, _ in arms)
        print(f"error: not frozen into {args.freeze}: {'interrupted' if interrupted else f'{failed} run(s) failed'} "
              f"(finished runs per arm of -n {args.runs}: {counts}); rerun the whole set", file=sys.stderr)
    elif args.freeze:
        freeze(args.freeze, arms, results, table)
        print(f"froze {args.freeze}: fill in its README.md; check it with python tools/check.py")
    elif failed:
        print(f"error: {failed} run(s) failed; their output is above", file=sys.stderr)
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
