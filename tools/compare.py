#!/usr/bin/env python3
"""Run a base script and its forks side by side, alternated, and compare them.

    python tools/compare.py -n 3 --arm "base=train_gpt.py --track=cpu_shakespeare" \
        --arm "fork=my_fork.py --track=cpu_shakespeare" [--out logs/compare] [--freeze DIR]

Each --arm is NAME=SCRIPT [--name=value ...]; SCRIPT is a script, or an arm folder of an experiment
(tools/forkdiff.py), which runs as its source rebuilt byte for byte into logs/forks/<sha256>.py.
The same script with other settings is an arm too (a sweep). Round i runs every arm once, in order
(A, B, A, B, ...: never two at once, so the machine's drift hits all arms alike), each with
--seed=SEED+i, the same seeds for every arm. A line is printed per finished run and appended to
OUT/runs.tsv, so Ctrl-C keeps every finished run (the running one gets SIGINT, so its log says where
it stopped; exit 130). A failed run prints its last 5 output lines (exit 1). At the end (or on
Ctrl-C) it prints, per arm: final val loss and training time (mean ± std), tokens/s, peak memory,
and Welch's t-test p-value against the first arm for loss and for time; and draws OUT/compare.png.

--freeze experiments/<YYYY-MM-DD>_<Name> keeps the result: each arm's unedited logs in <arm>/ and,
where the source they embed is not the base's (the first arm's SCRIPT, or --base PATH: a tracked
script or an arm folder), <arm>/fork.diff from it; arms.tsv with the SCRIPT that reruns each arm
(the base, or the arm's folder); MANIFEST.sha256 over the logs; README.md with the table and a
Summary row for the ideas table, to be completed with what was changed and why; and the plot.
tools/check.py verifies such a folder. A set that was interrupted or had a failed run is not
frozen.
"""

import argparse
import collections
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys

import forkdiff
import plots
from layout import fork_root, name_in, root_of, write_arms
from logformat import LogError, read_log
from manifest import write_manifest
from stats import summary
from tables import summary_stub


def parse_arm(text, workdir="."):
    """NAME=SCRIPT [--name=value ...] as (name, words); SCRIPT (relative to workdir) is a script or
    an arm folder whose source can be rebuilt."""
    name, sep, command = text.partition("=")
    words = shlex.split(command)
    if not sep or not name or not words:
        raise ValueError(f"--arm {text!r}: expected NAME=SCRIPT [--name=value ...]")
    path = os.path.join(workdir, words[0])
    if os.path.isdir(path):
        root = fork_root(path)
        try:
            forkdiff.source(name_in(path, root), root)
        except forkdiff.ForkError as e:
            raise ValueError(f"--arm {text!r}: {e}") from None
    elif not words[0].endswith(".py"):
        raise ValueError(f"--arm {text!r}: SCRIPT is neither a .py file nor an arm folder")
    return name, words


def runnable(words, workdir):
    """words with an arm folder replaced by its rebuilt source, written byte for byte to
    logs/forks/<sha256>.py (the script embeds its own file in its log)."""
    path = os.path.join(workdir, words[0])
    if not os.path.isdir(path):
        return words
    root = fork_root(path)
    source = forkdiff.source(name_in(path, root), root).encode("utf-8")
    script = os.path.join("logs", "forks", hashlib.sha256(source).hexdigest()[:16] + ".py")
    os.makedirs(os.path.join(workdir, "logs", "forks"), exist_ok=True)
    with open(os.path.join(workdir, script), "wb") as f:
        f.write(source)
    return [script, *words[1:]]


def run_once(words, seed, workdir, tail_lines=5):
    """Runs one training; returns the path of its log (None if it failed), its exit code and its
    last output lines. Ctrl-C stops the child as a terminal's would, with SIGINT, so it logs where
    it stopped; one that has not exited after 30 s (or a second Ctrl-C) is killed."""
    cmd = [sys.executable, *runnable(words, workdir), f"--seed={seed}"]
    log, tail = None, collections.deque(maxlen=tail_lines)
    # In its own process group, so a terminal's Ctrl-C reaches the child once, from here, not twice.
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        process_group=0,
    )
    try:
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            if line.startswith("log: ") and log is None:
                log = os.path.join(workdir, line[len("log: ") :].strip())
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.kill()
            proc.wait()
        raise
    return (log if proc.wait() == 0 else None), proc.returncode, list(tail)


def freeze(folder, arms, results, table, base, workdir="."):
    """The experiment folder (tools/layout.py): per arm its unedited logs; arms.tsv naming the
    script that reruns each arm: base if its logs embed base's source, else the folder of the first
    arm with that source, which holds fork.diff from base's (or the stored arm folder or tracked
    script the arm ran, if it has that source: a script is stored once); MANIFEST.sha256 over the
    logs; README.md with a Summary row to fill in (tools/tables.py) and the table; compare.png.
    base and the arms' scripts are relative to workdir. Raises ForkError, writing nothing, if the
    runs of an arm embed different sources."""
    root = root_of(folder, "experiment")
    base = name_in(os.path.join(workdir, base), root)
    for name, _ in arms:
        if len({r["source"] for r in results.get(name, [])}) > 1:
            raise forkdiff.ForkError(
                f"arm {name}: its runs embed different sources (the script changed between runs)"
            )
    os.makedirs(folder)
    scripts = {forkdiff.source(base, root): base}  # source -> the SCRIPT that stands for it
    lines = []
    for name, words in arms:
        adir = os.path.join(folder, name)
        os.makedirs(adir)
        runs = results.get(name, [])
        for r in runs:
            shutil.copyfile(r["log"], os.path.join(adir, os.path.basename(r["log"])))
        given = name_in(os.path.join(workdir, words[0]), root)
        if not runs:
            script = given
        elif runs[0]["source"] not in scripts:
            # A stored arm folder or tracked script (e.g. a record's) is named, else this arm
            # holds the diff.
            path = os.path.join(root, given)
            tracked = os.path.isdir(path) or (os.path.isfile(path) and forkdiff.git_tracks(path))
            stored = tracked and forkdiff.source(given, root) == runs[0]["source"]
            script = given if stored else forkdiff.write_fork(adir, root, base, runs[0]["source"])
            scripts[runs[0]["source"]] = script
        else:
            script = scripts[runs[0]["source"]]
        lines.append((name, [script, *words[1:]]))
    write_arms(folder, lines)
    write_manifest(folder)
    plots.comparison(arms, results, os.path.join(folder, "compare.png"))
    names = ", ".join(n for n, _ in arms)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
        f.write(
            f"# {os.path.basename(os.path.normpath(folder))}\n\n{summary_stub(folder)}\n"
            f"## What was changed and why\n\nTODO\n\n"
            f"## Results\n\nArms (the first is the base): {names}; commands in arms.tsv; "
            f"each fork's change from {base} in <arm>/{forkdiff.DIFF}.\n\n"
            f"```text\n{table}\n```\n\n![loss against training time](compare.png)\n"
        )


def load(log):
    """A parsed log (tools/logformat.py) that knows its path."""
    return dict(read_log(log), log=log)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--arm",
        action="append",
        required=True,
        help="NAME=SCRIPT.py [--name=value ...]; the first is the base",
    )
    ap.add_argument("-n", "--runs", type=int, default=3, help="runs per arm (default 3)")
    ap.add_argument(
        "--seed", type=int, default=1, help="round i uses seed SEED+i in every arm (default 1)"
    )
    ap.add_argument("--out", default="logs/compare", help="folder for runs.tsv and compare.png")
    ap.add_argument(
        "--workdir", default=".", help="where the scripts run (their data paths are relative to it)"
    )
    ap.add_argument(
        "--freeze",
        metavar="DIR",
        help="keep the result as an experiment folder (experiments/<date>_<Name>)",
    )
    ap.add_argument(
        "--base",
        help="with --freeze: the script or arm folder the forks' diffs start from "
        "(default: the first arm's SCRIPT)",
    )
    args = ap.parse_args(argv)
    try:
        arms = [parse_arm(a, args.workdir) for a in args.arm]
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
        path = os.path.join(args.workdir, words[0])
        if not os.path.isfile(path) and not os.path.isdir(path):
            print(
                f"error: --arm {name}: script {words[0]} not found in --workdir {args.workdir} "
                f"(paths are relative to it)",
                file=sys.stderr,
            )
            return 2
    if args.freeze and os.path.exists(args.freeze):
        print(f"error: --freeze {args.freeze} already exists", file=sys.stderr)
        return 2
    base = args.base or arms[0][1][0]
    try:
        if args.freeze:
            forkdiff.check_base(os.path.join(args.workdir, base))
    except forkdiff.ForkError as e:
        print(f"error: --freeze: the base {e}", file=sys.stderr)
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
                    except LogError as e:
                        r, tail = None, [f"{log}: {e}"]
                    if r is None:
                        failed += 1
                        how = (
                            f"killed by signal {-code}"
                            if code < 0
                            else f"failed with exit code {code}"
                        )
                        print(
                            f"[{name} seed {seed}] {how}"
                            + ("; its last output lines:" if tail else "; it printed nothing"),
                            flush=True,
                        )
                        print("".join(f"    {line}\n" for line in tail), end="", flush=True)
                        continue
                    results.setdefault(name, []).append(r)
                    tsv.write(f"{name}\t{seed}\t{log}\t{r['val_loss']:.4f}\t{r['train_time_ms']}\n")
                    print(
                        f"[{name} seed {seed}] val_loss {r['val_loss']:.4f}  train_time "
                        f"{r['train_time_ms'] / 1000:.1f}s  {log}",
                        flush=True,
                    )
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted: the finished runs above are kept", flush=True)
    table = summary(arms, results)
    print(table)
    if any(results.values()):
        plots.comparison(arms, results, os.path.join(args.out, "compare.png"))
    if args.freeze and (interrupted or failed):  # a frozen experiment holds every run it asked for
        counts = ", ".join(f"{name} {len(results.get(name, []))}" for name, _ in arms)
        why = "interrupted" if interrupted else f"{failed} run(s) failed"
        print(
            f"error: not frozen into {args.freeze}: {why} "
            f"(finished runs per arm of -n {args.runs}: {counts}); rerun the whole set",
            file=sys.stderr,
        )
    elif args.freeze:
        try:
            freeze(args.freeze, arms, results, table, base, args.workdir)
        except forkdiff.ForkError as e:
            print(f"error: --freeze: {e}: nothing frozen", file=sys.stderr)
            return 2
        print(f"froze {args.freeze}: fill in its README.md; check it with python tools/check.py")
    elif failed:
        print(f"error: {failed} run(s) failed; their output is above", file=sys.stderr)
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
