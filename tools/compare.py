#!/usr/bin/env python3
"""Run a base script and its forks side by side, alternated, and compare them.

    python tools/compare.py -n 3 --arm "base=train_gpt.py --track=cpu_shakespeare" \
        --arm "fork=my_fork.py --track=cpu_shakespeare" [--out logs/compare] [--freeze DIR]

Each --arm is NAME=SCRIPT [--name=value ...]; NAME is its folder's name (letters, digits, _.-+=,),
SCRIPT is a script, or an arm folder of an experiment (tools/forkdiff.py), which runs as its source
rebuilt byte for byte into logs/forks/<sha256>.py (with a warning if that is not what the folder's
own logs ran). The same script with other settings is an arm too (a sweep). Round i runs every arm
once, in order (A, B, A, B, ...: never two at once, so the machine's drift hits all arms alike),
each with --seed=SEED+i, the same concrete seed for every arm: SEED+i lies in [1, 2^32) (0 would let
each run draw its own; a run whose log holds another seed counts as failed). Before the first run,
everything is checked: names, paths, that OUT, the workdir and the --freeze folder can be written,
and every arm's flags against its script (its parse_args, run on the flags without training). A line
is printed per finished run and appended to OUT/runs.tsv, so Ctrl-C (or SIGTERM, SIGHUP) keeps every
finished run (the running one gets SIGINT, so its log says where it stopped; exit 130, 143, 129). A
failed run prints its script and its last 5 output lines (exit 1). At the end (or when stopped) it
prints, per arm: final val loss and training time (mean ± std), tokens/s, peak memory, and Welch's
t-test p-value against the first arm for loss and for time; and draws OUT/compare.png.

--freeze experiments/<YYYY-MM-DD>_<Name> keeps the result: each arm's unedited logs in <arm>/;
arms.tsv with the SCRIPT that reruns each arm: a frozen script its logs embed unchanged (a
record's train_gpt.py as git holds it, or a stored arm folder), else the arm's own folder, holding
<arm>/fork.diff from the frozen script nearest to its source (the smallest diff; --base PATH, a
record's train_gpt.py or an arm folder, names it instead), its size printed; MANIFEST.sha256 over
the logs; README.md with the table and a Summary row for the ideas table, its TODOs to be filled
in; and the plot. The folder appears whole or not at all. tools/check.py verifies it. A set that
was interrupted or had a failed run is not frozen.
"""

import argparse
import collections
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

import forkdiff
import plots
from layout import (
    RECORD_RE,
    arm_name_error,
    folder_kind,
    fork_root,
    name_in,
    os_error,
    read_text,
    root_of,
    unwritable,
    write_arms,
)
from logformat import LogError, read_log
from manifest import write_manifest
from stats import summary
from tables import TODO, summary_stub

SEED_MAX = 2**32  # seeds lie in [1, SEED_MAX): the trainer's range, less 0 (its "fresh seed")

# Run as `python -c` on a script's source (JSON on stdin: source, script, flags): defines its
# stdlib imports, classes, functions and UPPER_CASE constants, nothing else (no training, no torch),
# and calls its parse_args on the flags. Prints one JSON line: {"refused": its one-line message},
# {"ok": true}, or {"unchecked": why} where the script has no parse_args that runs so.
FLAG_CHECK = r"""
import ast, json, sys
req = json.load(sys.stdin)
ns = {"__name__": "flag_check", "__file__": req["script"]}
def wanted(node):
    if isinstance(node, ast.Import):
        return all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] in sys.stdlib_module_names
    if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
        return True
    if isinstance(node, ast.Assign):
        return all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
    return False
for node in ast.parse(req["source"]).body:
    if wanted(node):
        try:
            exec(compile(ast.Module([node], []), req["script"], "exec"), ns)
        except Exception:
            pass
if not callable(ns.get("parse_args")):
    print(json.dumps({"unchecked": "no parse_args"}))
    sys.exit()
try:
    ns["parse_args"](req["flags"])
except SystemExit as e:
    if e.code not in (None, 0):
        print(json.dumps({"refused": str(e.code) if isinstance(e.code, str) else f"exit {e.code}"}))
        sys.exit()
except Exception as e:
    print(json.dumps({"unchecked": f"{e.__class__.__name__}: {e}"}))
    sys.exit()
print(json.dumps({"ok": True}))
"""


class Stop(KeyboardInterrupt):
    """SIGTERM or SIGHUP to compare: handled as Ctrl-C is (the finished runs are kept)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def stop_on_signal(signum, frame):
    raise Stop(signum)


def parse_arm(text, workdir="."):
    """NAME=SCRIPT [--name=value ...] as (name, words); SCRIPT (relative to workdir) is a script or
    an arm folder whose source can be rebuilt."""
    name, sep, command = text.partition("=")
    try:
        words = shlex.split(command)
    except ValueError as e:  # an unclosed quote
        raise ValueError(f"--arm {text!r}: {e}") from None
    if not sep or not words:
        raise ValueError(f"--arm {text!r}: expected NAME=SCRIPT [--name=value ...]")
    why = arm_name_error(name)
    if why:
        raise ValueError(f"--arm {text!r}: {why}")
    seeded = [w for w in words[1:] if w == "--seed" or w.startswith("--seed=")]
    if seeded:
        raise ValueError(
            f"--arm {name}: {seeded[0]}: the seed is compare's to set, the same in every arm "
            f"(--seed SEED: round i runs seed SEED+i)"
        )
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


def source_of(words, workdir):
    """The source an arm's SCRIPT stands for: a script's text, or an arm folder's rebuilt one."""
    path = os.path.join(workdir, words[0])
    if os.path.isdir(path):
        root = fork_root(path)
        return forkdiff.source(name_in(path, root), root)
    return forkdiff.source(os.path.abspath(path), "/")


def runnable(words, workdir):
    """words with an arm folder replaced by its rebuilt source, written byte for byte to
    logs/forks/<sha256>.py (the script embeds its own file in its log)."""
    path = os.path.join(workdir, words[0])
    if not os.path.isdir(path):
        return words
    source = source_of(words, workdir).encode("utf-8")
    script = os.path.join("logs", "forks", hashlib.sha256(source).hexdigest()[:16] + ".py")
    os.makedirs(os.path.join(workdir, "logs", "forks"), exist_ok=True)
    with open(os.path.join(workdir, script), "wb") as f:
        f.write(source)
    return [script, *words[1:]]


def flags_refused(words, seed, workdir):
    """The one line an arm's script prints when it refuses the arm's flags (with --seed=seed), or
    None if it takes them or cannot be asked (tools/compare.py's FLAG_CHECK)."""
    request = {
        "source": source_of(words, workdir),
        "script": os.path.basename(words[0]),
        "flags": [*words[1:], f"--seed={seed}"],
    }
    try:
        p = subprocess.run(
            [sys.executable, "-c", FLAG_CHECK],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=60,
        )
        answer = json.loads(p.stdout.splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return answer.get("refused")


def arm_folder_drift(words, workdir):
    """A warning if SCRIPT is an arm folder whose rebuilt source is not the one its own logs ran
    (its fork.diff or its base changed since), else None."""
    path = os.path.join(workdir, words[0])
    if not os.path.isdir(path):
        return None
    try:
        logged = forkdiff.logged_source(path)
    except forkdiff.ForkError:
        return None
    if logged == source_of(words, workdir):
        return None
    return (
        f"{words[0]} rebuilds another source than the one its own logs ran (its {forkdiff.DIFF} "
        f"or its base changed since them; python tools/check.py names what): running the rebuilt "
        f"one"
    )


def run_once(words, seed, workdir, tail_lines=5):
    """Runs one training; returns the path of its log (None if it failed), its exit code and its
    last output lines. Ctrl-C (or a Stop) stops the child as a terminal's Ctrl-C would, with
    SIGINT, so it logs where it stopped; one that has not exited after 30 s (or a second Ctrl-C) is
    killed."""
    cmd = [sys.executable, *words, f"--seed={seed}"]
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


def stored(src, given, root, scripts):
    """The SCRIPT that stands for src unchanged, or None: one already named (scripts: source ->
    SCRIPT, the clean records' train_gpt.py and the arm folders stored so far), or the arm folder
    the arm ran if it rebuilds src."""
    if src in scripts:
        return scripts[src]
    if folder_kind(os.path.join(root, given)) == "arm" and forkdiff.source(given, root) == src:
        return given
    return None


def bases_for(arms, root, base, workdir):
    """The frozen scripts a fork.diff may start from: --base if given, else the records' clean
    train_gpt.py and the arm folders among the arms' SCRIPTs; and source -> SCRIPT for each."""
    if base is not None:
        candidates = [name_in(os.path.join(workdir, base), root)]
    else:
        candidates = forkdiff.frozen_bases(root)
        for _, words in arms:
            given = name_in(os.path.join(workdir, words[0]), root)
            if folder_kind(os.path.join(root, given)) == "arm" and given not in candidates:
                candidates.append(given)
    scripts = {}
    for c in candidates:
        scripts.setdefault(forkdiff.source(c, root), c)
    return candidates, scripts


def plan(arms, sources, folder, base, workdir):
    """How --freeze stores each arm: name -> (SCRIPT, None) for one stored unchanged, or (SCRIPT,
    BASE) for the arm's folder (SCRIPT) holding a fork.diff from BASE; sources: name -> the source
    its runs embed (arms without runs are named by their own SCRIPT). Raises ForkError if a fork
    has no frozen script to start from."""
    root = root_of(folder, "experiment")
    candidates, scripts = bases_for(arms, root, base, workdir)
    out = {}
    for name, words in arms:
        given = name_in(os.path.join(workdir, words[0]), root)
        script = stored(sources[name], given, root, scripts) if name in sources else given
        if script is not None:
            out[name] = (script, None)
            continue
        if not candidates:
            raise forkdiff.ForkError(
                f"arm {name}: no record's train_gpt.py under {os.path.join(root, 'records')} to "
                f"store its fork.diff against (--base names a record's script or an arm folder)"
            )
        script = name_in(os.path.join(folder, name), root)
        out[name] = (script, forkdiff.nearest(sources[name], candidates, root))
        scripts[sources[name]] = script
    return out


def freeze(folder, arms, results, table, base=None, workdir="."):
    """The experiment folder (tools/layout.py), whole or not at all (built under a hidden name
    beside it, then renamed): per arm its unedited logs; arms.tsv naming the script that reruns
    each arm: the frozen script its logs embed unchanged (a clean record's train_gpt.py, an arm
    folder it ran, or an earlier arm of this folder), else the arm's folder, holding fork.diff from
    base (--base) or the nearest frozen script; MANIFEST.sha256 over the logs; README.md with a
    Summary row to fill in (tools/tables.py) and the table; compare.png. base and the arms' scripts
    are relative to workdir. Returns the lines to print (each diff's base and size). Raises
    ForkError, writing nothing, if the runs of an arm embed different sources, and OSError."""
    root = root_of(folder, "experiment")
    for name, _ in arms:
        if len({r["source"] for r in results.get(name, [])}) > 1:
            raise forkdiff.ForkError(
                f"arm {name}: its runs embed different sources (the script changed between runs)"
            )
    sources = {name: runs[0]["source"] for name, runs in results.items() if runs}
    stores = plan(arms, sources, folder, base, workdir)
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp-", dir=parent)
    try:
        lines, said = [], []
        for name, words in arms:
            adir = os.path.join(tmp, name)
            os.makedirs(adir)
            for r in results.get(name, []):
                shutil.copyfile(r["log"], os.path.join(adir, os.path.basename(r["log"])))
            script, start = stores[name]
            if start is not None:
                forkdiff.write_fork(adir, root, start, sources[name], script)
                added, removed = forkdiff.diff_size(read_text(os.path.join(adir, forkdiff.DIFF)))
                said.append(f"{name}: {script}/{forkdiff.DIFF} from {start}: +{added} -{removed}")
            lines.append((name, [script, *words[1:]]))
        write_arms(tmp, lines)
        write_manifest(tmp)
        plots.comparison(arms, results, os.path.join(tmp, "compare.png"))
        names = ", ".join(n for n, _ in arms)
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(
                f"# {os.path.basename(os.path.normpath(folder))}\n\n{summary_stub(folder)}\n"
                f"## What was changed and why\n\n{TODO}\n\n"
                f"## Results\n\nArms (p-values against the first): {names}; commands in arms.tsv; "
                f"each fork's diff in <arm>/{forkdiff.DIFF}, from the frozen script its first "
                f"line names.\n\n"
                f"```text\n{table}\n```\n\n"
                "![val loss per arm, by step and by time; each run's final val loss](compare.png)\n"
            )
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return said


def load(log):
    """A parsed log (tools/logformat.py) that knows its path."""
    return dict(read_log(log), log=log)


def refuse(message):
    print(f"error: {message}", file=sys.stderr)
    return 2


def freeze_folder_error(folder):
    """Why --freeze cannot make folder (one line), or None: it must be
    <root>/experiments/<YYYY-MM-DD>_<Name>, not exist yet, and be writable."""
    parent, name = os.path.split(os.path.abspath(folder))
    if os.path.basename(parent) != "experiments" or not RECORD_RE.fullmatch(name):
        return (
            f"--freeze {folder}: an experiment folder is experiments/<YYYY-MM-DD>_<Name> in the "
            f"repository (its arms' scripts and bases are named from there)"
        )
    if os.path.lexists(folder):
        return f"--freeze {folder} already exists (a frozen experiment is never overwritten)"
    bad = unwritable(parent)
    if bad:
        return f"--freeze {folder}: " + os_error(
            bad[0], bad[1], "make it writable, or freeze elsewhere"
        )
    return None


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
        "--seed",
        type=int,
        default=1,
        help="round i uses seed SEED+i in every arm, in [1, 2^32) (default 1)",
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
        help="with --freeze: the record's train_gpt.py or arm folder every fork's diff starts "
        "from (default: for each arm, the frozen script nearest to its source)",
    )
    args = ap.parse_args(argv)
    if args.runs < 1:
        return refuse(f"-n {args.runs}: runs per arm must be at least 1")
    if args.seed < 1 or args.seed + args.runs - 1 >= SEED_MAX:
        why = "0 lets each run draw its own seed, unpairing the arms; " if args.seed == 0 else ""
        return refuse(
            f"--seed {args.seed}: {why}the seeds SEED..SEED+n-1 must lie in [1, 2^32) = "
            f"[1, {SEED_MAX})"
        )
    try:
        arms = [parse_arm(a, args.workdir) for a in args.arm]
    except ValueError as e:
        return refuse(str(e))
    seen = set()
    for name, _ in arms:
        if name in seen:
            return refuse(
                f"--arm {name}: two arms are named {name} (an arm's name is its folder's)"
            )
        seen.add(name)
    if not os.path.isdir(args.workdir):
        return refuse(f"--workdir {args.workdir}: no such folder")
    for name, words in arms:  # a typo in a path fails here, before hours of the other arms' runs
        path = os.path.join(args.workdir, words[0])
        if not os.path.isfile(path) and not os.path.isdir(path):
            return refuse(
                f"--arm {name}: script {words[0]} not found in --workdir {args.workdir} "
                f"(paths are relative to it)"
            )
    if args.base is not None and not args.freeze:
        return refuse("--base: only with --freeze (the base of the frozen forks' diffs)")
    base = args.base
    if args.freeze:
        why = freeze_folder_error(args.freeze)
        if why:
            return refuse(why)
        root = root_of(args.freeze, "experiment")
        if base is not None:
            why = forkdiff.base_error(os.path.join(args.workdir, base), root)
            if why:
                return refuse(f"--base: {why}")
        try:  # every arm can be stored: a frozen script it is, or one to diff it from
            sources = {name: source_of(words, args.workdir) for name, words in arms}
            plan(arms, sources, args.freeze, base, args.workdir)
        except forkdiff.ForkError as e:
            return refuse(f"--freeze: {e}")
    for flag, folder, fix in (
        ("--out", args.out, "name another folder with --out"),
        ("--workdir", os.path.join(args.workdir, "logs"), "the runs write their logs there"),
    ):
        bad = unwritable(folder)
        if bad:
            return refuse(f"{flag} {folder}: " + os_error(bad[0], bad[1], fix))
    try:
        commands = {name: runnable(words, args.workdir) for name, words in arms}
    except OSError as e:
        fix = "the workdir's logs/forks/ holds arm folders' rebuilt scripts"
        return refuse(os_error(e.filename, e, fix))
    for name, words in arms:  # before round 1, so that arm 1 does not run while arm 2 cannot
        refused = flags_refused(words, args.seed, args.workdir)
        if refused:
            return refuse(f"--arm {name}: {words[0]} refuses its flags: {refused}")
    for name, words in arms:
        warning = arm_folder_drift(words, args.workdir)
        if warning:
            print(f"warning: --arm {name}: {warning}", file=sys.stderr, flush=True)
    try:
        os.makedirs(args.out, exist_ok=True)
        tsv = open(os.path.join(args.out, "runs.tsv"), "a", buffering=1)
    except OSError as e:
        return refuse(f"--out {args.out}: " + os_error(e.filename, e, "name another with --out"))
    handlers = {s: signal.signal(s, stop_on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        results, failed, stopped = run_rounds(args, arms, commands, tsv)
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        tsv.close()
    return finish(args, arms, results, failed, stopped, base)


def run_rounds(args, arms, commands, tsv):
    """Every round, every arm once; returns (results, failed runs, the signal that stopped it or
    None)."""
    results, failed, stopped = {}, 0, None
    try:
        for i in range(args.runs):
            for name, words in arms:
                seed = args.seed + i
                log, code, tail = run_once(commands[name], seed, args.workdir)
                r = None
                try:
                    r = None if log is None else load(log)
                except LogError as e:
                    tail = [f"{log}: {e}"]
                if r is not None and r["hparams"].get("seed", str(seed)) != str(seed):
                    tail = [
                        f"its log {log} holds seed={r['hparams']['seed']}, not {seed}: the script "
                        f"does not take compare's seed, so the arms would not be paired"
                    ]
                    r, code = None, 0
                if r is None:
                    failed += 1
                    how = (
                        f"killed by signal {-code}"
                        if code < 0
                        else f"failed with exit code {code}"
                        if code
                        else "failed"
                    )
                    print(
                        f"[{name} seed {seed}] {words[0]} {how}"
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
    except KeyboardInterrupt as e:
        stopped = getattr(e, "signum", signal.SIGINT)
        how = (
            "interrupted"
            if stopped == signal.SIGINT
            else f"stopped by {signal.Signals(stopped).name}"
        )
        print(f"{how}: the finished runs above are kept", flush=True)
    return results, failed, stopped


def finish(args, arms, results, failed, stopped, base):
    """The table, the plot and, if asked and whole, the frozen folder; returns the exit code."""
    table = summary(arms, results)
    print(table)
    if any(results.values()):
        try:
            plots.comparison(arms, results, os.path.join(args.out, "compare.png"))
        except OSError as e:
            print(f"error: --out: {os_error(e.filename, e, 'the runs are kept')}", file=sys.stderr)
    code = 128 + stopped if stopped else 1 if failed else 0
    if args.freeze and (stopped or failed):  # a frozen experiment holds every run it asked for
        counts = ", ".join(f"{name} {len(results.get(name, []))}" for name, _ in arms)
        why = "interrupted" if stopped else f"{failed} run(s) failed"
        print(
            f"error: not frozen into {args.freeze}: {why} "
            f"(finished runs per arm of -n {args.runs}: {counts}); rerun the whole set",
            file=sys.stderr,
        )
    elif args.freeze:
        try:
            said = freeze(args.freeze, arms, results, table, base, args.workdir)
        except forkdiff.ForkError as e:
            return refuse(f"--freeze: {e}: nothing frozen")
        except OSError as e:
            kept = f"nothing frozen; the runs are listed in {os.path.join(args.out, 'runs.tsv')}"
            return refuse(f"--freeze {args.freeze}: " + os_error(e.filename, e, kept))
        print("\n".join(said + [""]), end="")
        print(
            f"froze {args.freeze}: fill in its README.md (its {TODO}s); check it with "
            f"python tools/check.py"
        )
    elif failed:
        print(f"error: {failed} run(s) failed; their output is above", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
