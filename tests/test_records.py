"""tools/check.py and tools/submit.py, on records built in tmp dirs from real tiny runs of
train_gpt.py (3 seeds of 10 steps and 2 of 60, a few seconds each, done once per module)."""

import io
import os
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import check
import forkdiff
import layout
import manifest
import shards
import submit as submit_mod
import tables
import tracks
import verify
from logformat import RULER, read_log, split_log
from stats import faster_p, fmt_time, stats_of

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "train_gpt.py"
TRACK = "cpu_shakespeare"
REAL_RULES = dict(tracks.RULES)

VOCAB = 256  # a tiny vocab keeps the lm_head (the bulk of the FLOPs at this size) cheap


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    for split, n in [("train", 40_000), ("val", 5_000)]:
        tokens = rng.integers(0, VOCAB - 1, n)
        tokens[::500] = VOCAB - 1  # documents start with an EOT-like token
        shards.write_shard(root / f"{split}_000.bin", tokens)
    return root


@pytest.fixture(scope="module")
def runs(shard_dir):
    """Five finished logs of train_gpt.py on random-token shards, run at once so that they share the
    cores alike: seeds 1-3 at 10 steps, seeds 4-5 at 60. Run as two groups, one after the other,
    they were not comparable: in one suite run the three 10-step runs took 1.2x the time of the two
    30-step ones."""
    return tiny_runs(shard_dir, [(1, 10), (2, 10), (3, 10), (4, 60), (5, 60)])


@pytest.fixture(scope="module")
def logs(runs):
    """Three logs, seeds 1-3, 10 steps."""
    return runs[:3]


@pytest.fixture(scope="module")
def slow_logs(runs):
    """Two logs of the same script taking 6x the steps: the 'previous script' beside a record. The
    10-step runs finish first, so the 60-step ones then have the cores to themselves: slower all the
    same."""
    return runs[3:]


# The fixtures' runs use their own data and val set: these are the track's rules in these tests.
TINY_RULES = {TRACK: dict(hparams=dict(track=TRACK, val_tokens="2048"), val_predictions=2048)}


@pytest.fixture(autouse=True)
def tiny_rules(monkeypatch):
    monkeypatch.setattr(tracks, "RULES", TINY_RULES)


def clearly_faster(runs, previous):
    """The speed-up's p-value in these tests: 0 when every run beat every previous run, else 1.
    Welch's p on two real 60-step runs sharing two cores is noise (it crossed 0.01 in CI:
    p=0.0104); tests/test_submit.py tests the Welch rule itself on logs with set times."""
    slowest = max(r["train_time_ms"] for r in runs)
    fastest_previous = min(r["train_time_ms"] for r in previous)
    if slowest < fastest_previous:
        return 0.0
    return 1.0


@pytest.fixture(autouse=True)
def steady_speed_test(monkeypatch):
    monkeypatch.setattr(verify, "faster_p", clearly_faster)
    monkeypatch.setattr(submit_mod, "faster_p", clearly_faster)


def tiny_runs(root, runs):
    """The runs, (seed, steps) each, at once, one thread each: the cores are shared, the wall time
    is not."""
    procs = []
    for seed, steps in runs:
        cwd = root / f"seed{seed}"
        cwd.mkdir()
        # peak_flops given: skips the matmul benchmark; threads=1: the runs share the cores.
        cmd = [
            sys.executable,
            str(TRAIN),
            "--track=cpu_shakespeare",
            f"--train_files={root}/train_*.bin",
            f"--val_files={root}/val_*.bin",
            "--num_layers=2",
            "--model_dim=64",
            "--num_heads=2",
            "--seq_len=64",
            "--device_batch_size=256",
            "--batch_size=512",
            f"--num_iterations={steps}",
            "--val_loss_every=5",
            "--val_tokens=2048",
            f"--seed={seed}",
            f"--vocab_size={VOCAB}",
            f"--bos_id={VOCAB - 1}",
            "--head_cutoffs=",
            "--dtype=float32",
            "--peak_flops=1e10",
            "--threads=1",
            "--compile=false",
        ]
        with open(
            cwd / "output.txt", "w"
        ) as output:  # a file, not a pipe: a full pipe would stall a run
            procs.append(
                (cwd, subprocess.Popen(cmd, cwd=cwd, stdout=output, stderr=subprocess.STDOUT))
            )
    out = []
    for cwd, proc in procs:
        assert proc.wait(timeout=300) == 0, (cwd / "output.txt").read_text()[-2000:]
        [log] = (cwd / "logs").glob("*.txt")
        out.append(log)
    return out


def final_loss(log):
    return float(re.search(r"^final_val_loss:(\S+)", log.read_text(), re.M)[1])


def source_of(log):
    return log.read_bytes().split((RULER + "\n").encode())[1]


def make_record(records, name, logs, previous=None, track=TRACK):
    """records/<track>/<name>/ with the script taken from the first log, the logs, a README, and
    previous/ holding the previous script's logs, if given (logs only: in these tests they embed
    train_gpt.py, which is the record's own script)."""
    d = records / track / name
    d.mkdir(parents=True)
    (d / "train_gpt.py").write_bytes(source_of(logs[0]))
    for log in logs:
        shutil.copyfile(log, d / log.name)
    (d / "README.md").write_text(f"# {name}\n")
    if previous:
        (d / "previous").mkdir()
        for log in previous:
            shutil.copyfile(log, d / "previous" / log.name)
    manifest.write_manifest(d)
    return d


def forked(logs, tmp_path):
    """The logs, claiming a fork of the script they ran: one line added to their embedded source."""
    out = []
    for log in logs:
        out.append(tmp_path / "forked" / log.name)
        out[-1].parent.mkdir(exist_ok=True)
        out[-1].write_text(log.read_text().replace(RULER + "\n", RULER + "\n# the fork\n", 1))
    return out


def run_check(records, *args, target=None):
    """check.main in-process (the CLI costs a second of imports per call); returns (exit code,
    lines)."""
    argv = ["--records", str(records), *args]
    if target is not None:
        argv += ["--target", f"{TRACK}={target}"]
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = check.main(argv)
    return code, buf.getvalue().splitlines()


def easy_target(logs):
    return round(max(final_loss(p) for p in logs) + 1, 4)  # far above the runs: p is tiny


def test_runs_differ_and_parse(logs):
    losses = [final_loss(p) for p in logs]
    assert len(set(losses)) == 3, losses  # seeds must give different losses for the t-test
    for p in logs:
        run = read_log(p)
        assert run["val_loss"] == final_loss(p) and run["total"] == 10
        assert run["source"].encode() == source_of(p) == TRAIN.read_bytes()


def test_good_record_passes(tmp_path, logs, slow_logs):
    make_record(tmp_path, "2025-01-02_Good", logs, previous=slow_logs)
    code, lines = run_check(tmp_path, target=easy_target(logs))
    assert code == 0, lines
    [line] = lines
    mean = np.mean([final_loss(p) for p in logs])
    ratio = np.mean([read_log(p)["train_time_ms"] for p in logs]) / np.mean(
        [read_log(p)["train_time_ms"] for p in slow_logs]
    )
    assert line.startswith(f"{TRACK}/2025-01-02_Good  n=3  val_loss={mean:.4f}±")
    assert line.endswith(f"OK ({ratio:.3f}x the time of the previous script beside it)")


def test_previous_script_rules(tmp_path, logs, slow_logs):
    """A record needs previous/ (the logs of the script it beats, run beside it) and must be faster
    than it. previous/ holds logs only where they embed a record's train_gpt.py, and fork.diff (from
    the nearest record script) where they do not; the checker proves the diff against the logs."""
    make_record(tmp_path / "a", "2025-01-02_Alone", logs)
    make_record(tmp_path / "b", "2025-01-02_Slower", slow_logs, previous=logs)
    fork = forked(slow_logs, tmp_path)
    records = tmp_path / "c" / "records"
    d = make_record(records, "2025-01-02_NoDiff", logs, previous=fork)
    [alone] = run_check(tmp_path / "a", target=easy_target(logs))[1]
    [slower] = run_check(tmp_path / "b", target=easy_target(logs))[1]
    [nodiff] = run_check(records, target=easy_target(logs))[1]
    assert "FAIL: no previous/: the logs of the script it beats" in alone
    assert "FAIL: not faster than the previous script run beside it (" in slower
    assert nodiff.endswith(
        "FAIL: previous/: its logs embed no record's train_gpt.py: add the diff from the nearest "
        "(python tools/forks.py records/cpu_shakespeare/2025-01-02_NoDiff/previous "
        "records/<track>/<record>/train_gpt.py)"
    )
    base = "records/cpu_shakespeare/2025-01-02_NoDiff/train_gpt.py"  # relative to the root, c/
    forkdiff.write_fork(
        str(d / "previous"), str(tmp_path / "c"), base, split_log(fork[0].read_text())[0]
    )
    assert (
        (d / "previous" / "fork.diff")
        .read_text()
        .startswith(f"--- {base}\n+++ {base[: -len('train_gpt.py')]}previous\n")
    )
    code, [ok] = run_check(records, target=easy_target(logs))
    assert code == 0, ok
    shutil.copyfile(d / "train_gpt.py", d / "previous" / "train_gpt.py")
    [copy] = run_check(records, target=easy_target(logs))[1]
    assert (
        "records/cpu_shakespeare/2025-01-02_NoDiff/previous/train_gpt.py: a copy of a script the "
        "logs embed" in copy
    )
    (d / "previous" / "train_gpt.py").unlink()
    for (
        log
    ) in slow_logs:  # the same runs (same names) embedding the record's script: no diff needed
        shutil.copyfile(log, d / "previous" / log.name)
    [extra] = run_check(records, target=easy_target(logs))[1]
    assert (
        "previous/fork.diff: its logs embed 2025-01-02_NoDiff's train_gpt.py: delete the diff"
        in extra
    )


def test_track_rules_refuse_another_val_set_or_track(tmp_path, logs, slow_logs, monkeypatch):
    monkeypatch.setattr(tracks, "RULES", REAL_RULES)
    make_record(tmp_path, "2025-01-02_OwnVal", logs, previous=slow_logs)
    make_record(tmp_path, "2025-01-02_OtherTrack", logs, previous=slow_logs, track="8xh100_fineweb")
    code, lines = run_check(tmp_path, target=easy_target(logs))
    assert code == 1
    other, own = lines
    assert (
        "val_tokens=2048 (the track's is 0)" in own
        and "2048 val predictions (the track's is 155120)" in own
    )
    assert "track=cpu_shakespeare (the track's is 8xh100_fineweb)" in other


def test_rerun_reproduces_a_logged_seed(tmp_path, logs, slow_logs, capsys):
    d = make_record(tmp_path, "2025-01-02_Again", logs, previous=slow_logs)
    assert check.main(["--rerun", str(d), "--log", logs[1].name, "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()[-1]
    loss = f"{final_loss(logs[1]):.4f}"
    assert out.startswith(
        f"rerun of {logs[1].name}: final val loss {loss} vs logged {loss}, |diff| 0.0000 <= "
    )
    assert "agrees" in out
    # A frozen script that is not what ran: the rerun disagrees, exit 1.
    script = (d / "train_gpt.py").read_text()
    (d / "train_gpt.py").write_text(
        script.replace("return loss_sum.item() / n", "return loss_sum.item() / n + 1")
    )
    assert check.main(["--rerun", str(d), "--workdir", str(tmp_path)]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    first = min(log.name for log in logs)  # without --log, the first log by name
    assert last.startswith(f"rerun of {first}: final val loss ") and "DISAGREES" in last, last


def test_target_not_reached_fails(tmp_path, logs):
    make_record(tmp_path, "2025-01-02_Slow", logs)
    code, [line] = run_check(tmp_path, target=min(final_loss(p) for p in logs) - 1)
    assert code == 1 and "FAIL: mean" in line and "above target" in line


def test_baseline_exempt_and_unset_target(tmp_path, logs, slow_logs):
    make_record(tmp_path, "2025-01-01_Baseline", logs[:1])  # one run: fine for a baseline
    make_record(tmp_path, "2025-01-02_Other", logs[1:], previous=slow_logs)
    code, lines = run_check(tmp_path, target="none")
    assert code == 0, lines
    assert lines[0].endswith("OK (baseline, defines the target)")
    assert lines[1].endswith("OK (target not set, logs verified only)")


def test_source_differs_fails(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_Edited", logs)
    with open(d / "train_gpt.py", "a") as f:
        f.write("# tweaked after the runs\n")
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert code == 1 and "embedded source differs from train_gpt.py" in line


def test_edited_final_loss_fails(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_Liar", logs)
    log = d / logs[0].name
    text = log.read_text()
    real = final_loss(logs[0])
    log.write_text(text.replace(f"final_val_loss:{real:.4f}", f"final_val_loss:{real - 0.1:.4f}"))
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert code == 1 and f"{logs[0].name}: final_val_loss:" in line and "disagrees" in line


def test_single_run_fails(tmp_path, logs):
    make_record(tmp_path, "2025-01-02_Lucky", logs[:1])
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert code == 1 and "n=1" in line and "at least 2" in line


def test_copied_run_fails(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_Copy", logs[:2])
    shutil.copyfile(logs[0], d / "00000000-copy.txt")
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert code == 1 and "copied run" in line


def test_malformed_records_fail_in_one_line(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_Broken", logs)
    text = logs[0].read_text()
    (d / logs[0].name).write_text(text[: text.index("step:6/10")])  # crashed mid-run
    (d / logs[1].name).write_bytes(b"\xff\xfe not a log")
    swapped = logs[2].read_text().split("\n")
    i = next(k for k, s in enumerate(swapped) if s.startswith("step:3/10"))
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    (d / logs[2].name).write_text("\n".join(swapped))
    make_record(tmp_path, "2025-01-03_NoScript", logs)
    (tmp_path / TRACK / "2025-01-03_NoScript" / "train_gpt.py").unlink()
    (tmp_path / TRACK / "not-a-date").mkdir()
    # The real CLI: one line per record, exit 1, no traceback.
    p = subprocess.run(
        [sys.executable, str(REPO / "tools" / "check.py"), "--records", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and "Traceback" not in p.stdout + p.stderr, p.stderr
    broken, noscript, nodate = p.stdout.splitlines()
    assert "unfinished run" in broken and "unreadable" in broken and "do not increase" in broken
    assert "missing or unreadable train_gpt.py" in noscript
    assert "not YYYY-MM-DD_Name" in nodate


README = "# Speedrun\n\nintro\n\n<!-- records:begin -->\nstale\n<!-- records:end -->\n\nafter\n"


def test_table_is_deterministic_and_between_markers(tmp_path, logs, slow_logs):
    records = tmp_path / "records"
    make_record(records, "2025-01-01_Baseline", logs[:2])
    make_record(records, "2025-01-02_Faster", logs[1:], previous=slow_logs)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    args = ["--table", "--readme", str(readme)]
    code, _ = run_check(records, *args, target=easy_target(logs))
    first = readme.read_bytes()
    code2, _ = run_check(records, *args, target=easy_target(logs))
    assert code == code2 == 0 and readme.read_bytes() == first
    text = first.decode()
    assert (
        text.startswith("# Speedrun\n\nintro\n\n<!-- records:begin -->\n") and "stale" not in text
    )
    assert text.endswith("<!-- records:end -->\n\nafter\n")
    rows = [s for s in text.splitlines() if s.startswith("| 2025-")]
    assert rows[0].startswith(
        "| 2025-01-01 | [Baseline](records/cpu_shakespeare/2025-01-01_Baseline) | 2 |"
    )
    assert rows[1].startswith(
        "| 2025-01-02 | [Faster](records/cpu_shakespeare/2025-01-02_Faster) | 2 |"
    )
    assert rows[0].endswith("| - | - | OK |"), "a Baseline has no previous script"
    loss, loss_std, secs, secs_std = stats_of([read_log(p) for p in slow_logs])
    assert f"| n=2: {loss:.4f} ± {loss_std:.4f}, {fmt_time(secs, secs_std)} | " in rows[1]
    assert rows[1].endswith("x | OK |")
    assert "### 8xh100_fineweb" in text and "No records yet." in text

    readme.write_text("# no markers\n")
    code, _ = run_check(records, *args)
    assert code == 2 and readme.read_text() == "# no markers\n"


def test_plot_writes_png_linked_from_table(tmp_path, logs):
    records = tmp_path / "records"
    make_record(records, "2025-01-01_Baseline", logs)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    code, _ = run_check(
        records, "--plot", "--table", "--readme", str(readme), target=easy_target(logs)
    )
    png = records / f"{TRACK}.png"
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.pyplot as plt

    image = plt.imread(png)
    assert image.shape[:2] == (500, 800) and image.std() > 0.05, (
        "an 8x5 inch figure with something drawn"
    )
    assert f"[{TRACK}.png](records/{TRACK}.png)" in readme.read_text()


def refused(records, *args):
    """submit.main in-process for the refusals; returns (exit code, stderr)."""
    buf = io.StringIO()
    with redirect_stderr(buf), redirect_stdout(io.StringIO()):
        code = submit_mod.main([*map(str, args), "--records", str(records)])
    return code, buf.getvalue()


def test_submit_round_trip(tmp_path, logs, slow_logs):
    records = tmp_path / "records"
    target = f"--target={TRACK}={easy_target(logs)}"
    # In-process: the tiny runs keep these tests' own track rules (see tiny_rules).
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = submit_mod.main(
            [
                TRACK,
                "Tiny",
                *map(str, logs),
                "--previous",
                *map(str, slow_logs),
                "--date",
                "2025-01-05",
                "--records",
                str(records),
                target,
            ]
        )
    assert code == 0, out.getvalue()
    d = records / TRACK / "2025-01-05_Tiny"
    assert (d / "train_gpt.py").read_bytes() == source_of(logs[0])
    for log in logs:
        assert (d / log.name).read_bytes() == log.read_bytes()
    readme = (d / "README.md").read_text()
    assert "## What changed and why" in readme and "n = 3" in readme and "p = " in readme
    assert (
        out.getvalue().splitlines()[0].startswith(f"{TRACK}/2025-01-05_Tiny  n=3")
        and "OK" in out.getvalue()
    )
    for log in slow_logs:
        assert (d / "previous" / log.name).read_bytes() == log.read_bytes()
    assert sorted(os.listdir(d / "previous")) == sorted(log.name for log in slow_logs), (
        "logs only: a record's script"
    )
    listed = (d / manifest.MANIFEST).read_text().splitlines()
    assert [m.split("  ")[1] for m in listed] == sorted(
        [log.name for log in logs] + [f"previous/{log.name}" for log in slow_logs]
    )
    assert run_check(records, target=easy_target(logs))[0] == 0

    # previous logs of a script that is no record's: previous/fork.diff from the nearest record
    # script
    # (in a track of its own: the only record script is the new record's)
    other_records = tmp_path / "other" / "records"
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        code = submit_mod.main(
            [
                TRACK,
                "Forked",
                *map(str, logs),
                "--previous",
                *map(str, forked(slow_logs, tmp_path)),
                "--date",
                "2025-01-06",
                "--records",
                str(other_records),
                target,
            ]
        )
    f = other_records / TRACK / "2025-01-06_Forked" / "previous"
    record = f"records/{TRACK}/2025-01-06_Forked"
    assert code == 0 and (f / "fork.diff").read_text().startswith(
        f"--- {record}/train_gpt.py\n+++ {record}/previous\n"
    )
    assert not list(other_records.rglob("previous/*.py"))
    assert run_check(other_records, target=easy_target(logs))[0] == 0

    before = sorted(os.listdir(d))
    code, err = refused(records, TRACK, "Tiny", *logs, "--date", "2025-01-05", target)
    assert code != 0 and "already exists" in err and sorted(os.listdir(d)) == before

    code, err = refused(records, "no_such_track", "Tiny", *logs)
    assert code != 0 and "unknown track" in err

    other = tmp_path / "aaaaaaaa-other.txt"  # same run, but it claims a different script
    other.write_text(logs[1].read_text().replace(RULER + "\n", RULER + "\n# other\n", 1))
    code, err = refused(records, TRACK, "Mixed", logs[0], other, "--date", "2025-01-06", target)
    assert code != 0 and "different script" in err
    assert not (records / TRACK / "2025-01-06_Mixed").exists()


def test_repo_records_pass_and_readme_table_is_current(monkeypatch):
    """What `python tools/check.py --table` would write is what README.md holds. The repository's
    logs have set times, so the checker's own Welch rule judges them, not clearly_faster."""
    monkeypatch.setattr(verify, "faster_p", faster_p)
    records = REPO / "records"
    results = verify.check_all(str(records), tracks.TARGETS, REAL_RULES)
    assert results and all(r["ok"] for r in results), [verify.record_line(r) for r in results]
    plots = {t for t in tracks.TARGETS if (records / f"{t}.png").is_file()}
    expected = tables.records_table(results, tracks.TARGETS, str(REPO), str(records), plots)
    readme = (REPO / "README.md").read_text()
    assert f"{tables.RECORDS_BEGIN}\n{expected}\n{tables.RECORDS_END}" in readme, (
        "run: python tools/check.py --table --plot"
    )


def test_missing_folders_are_one_line(tmp_path):
    for args in (
        ["--records", str(tmp_path / "nonexistent")],
        ["--rerun", str(tmp_path / "nonexistent")],
    ):
        p = subprocess.run(
            [sys.executable, str(REPO / "tools" / "check.py"), *args],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert p.stderr.strip().splitlines() == [
            f"error: {args[0]} {args[1]}: no such "
            f"{'folder' if args[0] == '--records' else 'record folder'}"
        ]


def test_repo_experiments_verify():
    """Every experiments/ folder: its logs embed its arms' scripts, its README holds the recomputed
    table."""
    folders = sorted(p for p in (REPO / "experiments").iterdir() if p.is_dir())
    assert folders
    for folder in folders:
        name, reasons = verify.check_experiment(str(folder))
        assert not reasons, (name, reasons)


def test_repo_ideas_table_is_current():
    """What `python tools/check.py --table` would write between experiments/README.md's markers is
    what it holds, and every experiment folder is in a row."""
    assert tables.ideas_errors(str(REPO / "experiments")) == []


def test_a_track_readme_is_no_record(tmp_path, logs, slow_logs):
    """A track's README.md (records/8xh100_fineweb/ holds only that) is not taken for a record:
    no check line, no table row; the table links it beside the track's target."""
    assert (REPO / "records" / "8xh100_fineweb" / "README.md").is_file()
    assert {t for t, _, _ in layout.find_records(str(REPO / "records"))} == {TRACK}
    records = tmp_path / "records"
    (records / "8xh100_fineweb").mkdir(parents=True)
    (records / "8xh100_fineweb" / "README.md").write_text("# a projection, not a record\n")
    make_record(records, "2025-01-02_Good", logs, previous=slow_logs)
    (records / TRACK / "README.md").write_text("# what belongs to the track\n")
    readme = tmp_path / "README.md"
    readme.write_text(README)
    code, lines = run_check(records, "--table", "--readme", str(readme), target=easy_target(logs))
    assert code == 0 and len(lines) == 1 and lines[0].startswith(f"{TRACK}/2025-01-02_Good "), lines
    text = readme.read_text()
    assert (
        "Target val loss: 3.28. About the track: "
        "[8xh100_fineweb/README.md](records/8xh100_fineweb/README.md).\n\nNo records yet." in text
    )
    assert f"About the track: [{TRACK}/README.md](records/{TRACK}/README.md)." in text
    assert len([row for row in text.splitlines() if row.startswith("| 2025-")]) == 1


def test_record_order_and_the_record_before():
    """By date; on one date a Baseline first (the records after it claim its target)."""
    names = ["2025-01-02_B", "2025-01-02_Baseline", "2025-01-01_Z", "2025-01-02_A"]
    order = ["2025-01-01_Z", "2025-01-02_Baseline", "2025-01-02_A", "2025-01-02_B"]
    assert sorted(names, key=layout.record_key) == order
    assert layout.record_before(str(REPO / "records" / "nonexistent"), "2025-01-01_X") is None
    track = REPO / "records" / TRACK
    assert (
        layout.record_before(str(track), "2026-12-03_TwoLayers")
        == "2026-12-02_WrittenAttentionBF16"
    )
    assert layout.record_before(str(track), "2026-11-25_Baseline") is None


@pytest.mark.parametrize("case", ["no previous", "above target", "previous not the record before"])
def test_submit_refuses_a_record_that_would_fail_the_check_and_writes_nothing(
    tmp_path, logs, slow_logs, case
):
    records, target, previous = (
        tmp_path / "records",
        f"--target={TRACK}={easy_target(logs)}",
        slow_logs,
    )
    if case == "above target":
        target = f"--target={TRACK}=1.0"
    elif (
        case == "previous not the record before"
    ):  # which is not a Baseline, so previous/ must hold its script
        make_record(records, "2025-01-01_Baseline", logs)
        make_record(records, "2025-01-02_Faster", logs, previous=slow_logs)
        previous = [tmp_path / f"other{i}.txt" for i in range(len(slow_logs))]
        for log, other in zip(slow_logs, previous):
            other.write_text(log.read_text().replace(RULER + "\n", RULER + "\n# other\n", 1))
    args = [TRACK, "Tiny", *logs, "--date", "2025-01-05", target]
    if case != "no previous":
        args += ["--previous", *previous]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, err = refused(records, *args)
    assert code == 2 and len(err.splitlines()) == 1 and err.endswith("; nothing written\n"), err
    if case == "no previous":
        assert err.startswith(
            "refused: Tiny is not a Baseline, so it needs --previous logs/<uuid>.txt ..."
        )
    else:
        assert err.startswith(f"refused: {TRACK}/2025-01-05_Tiny would fail the check: ")
        assert (
            "above target 1.0"
            if case == "above target"
            else "previous/: its logs do not embed the script of the record before it "
            "(2025-01-02_Faster)"
        ) in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("folder", ["records/cpu_shakespeare", "records"])
def test_rerun_of_a_folder_that_is_not_a_record_is_one_line(folder):
    p = subprocess.run(
        [sys.executable, str(REPO / "tools" / "check.py"), "--rerun", folder],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr == (
        f"error: --rerun {folder}: not a record folder (one holding train_gpt.py and its logs, "
        "records/<track>/<YYYY-MM-DD>_<Name>)\n"
    )


# A careless edit to a record's logs is named, each by the rule that catches it (issue 18).
def test_edited_intermediate_val_loss_is_named(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_Edited", logs)
    log = d / logs[0].name
    text = log.read_text()
    line = re.search(r"^step:5/10 val_loss:\S+", text, re.M)[0]
    log.write_text(text.replace(line, line[:-1] + ("1" if line[-1] != "1" else "2")))
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert (
        code == 1
        and f"FAIL: {log.name}: edited since the manifest (restore it, e.g. git checkout " in line
    )


def test_final_val_loss_edited_in_both_lines_is_named(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_Liar", logs)
    log = d / logs[0].name
    real = f"{final_loss(logs[0]):.4f}"
    log.write_text(log.read_text().replace(f"val_loss:{real}", f"val_loss:{float(real) - 0.1:.4f}"))
    assert read_log(log)["val_loss"] == pytest.approx(
        float(real) - 0.1
    )  # the log itself still parses
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert code == 1 and f"FAIL: {log.name}: edited since the manifest" in line


def test_deleted_log_is_named(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_Fewer", logs)
    (d / logs[2].name).unlink()
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert (
        code == 1 and "n=2" in line and f"FAIL: {logs[2].name}: in the manifest but missing" in line
    )


def duplicate(d, log):
    """A copy of log in d under another uuid (its log: line too), one train-loss digit changed."""
    copy = d / ("ffffffff" + log.name[8:])
    text = log.read_text().replace(f"log: logs/{log.name}", f"log: logs/{copy.name}")
    line = re.search(r"^step:\S+ train_loss:\S+ ", text, re.M)[0]  # the first train step line
    copy.write_text(text.replace(line, f"{line[:-2]}{(int(line[-2]) + 1) % 10} "))
    return copy


def test_added_duplicate_is_named(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_More", logs)
    copy = duplicate(d, d / logs[0].name)
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert (
        code == 1
        and f"FAIL: {copy.name}: not in the manifest (delete it, or if it is a real run, "
        f"python tools/check.py --write-manifest "
        in line
    )


def test_repeated_seed_is_named(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_More", logs)
    copy = duplicate(d, d / logs[0].name)
    manifest.write_manifest(d)  # the manifest rewritten to include the copy: the seeds still tell
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert (
        code == 1
        and f"FAIL: {copy.name}: seed=1 as in {logs[0].name} (the runs of one claim need distinct "
        f"seeds: a copied or rerun log? keep one); no previous/"
        in line
    )


def test_log_line_not_matching_its_file_name_is_named(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_Renamed", logs)
    new = d / ("ffffffff" + logs[0].name[8:])
    (d / logs[0].name).rename(new)
    manifest.write_manifest(d)
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert (
        code == 1
        and f"FAIL: {new.name}: its log: line names logs/{logs[0].name}, not logs/{new.name} "
        f"(a renamed or pasted log: restore the file the run wrote); no previous/"
        in line
    )


def test_folder_without_manifest_fails_with_the_fix(tmp_path, logs):
    d = make_record(tmp_path, "2025-01-02_Bare", logs)
    (d / manifest.MANIFEST).unlink()
    code, [line] = run_check(tmp_path, target=easy_target(logs))
    assert (
        code == 1
        and f"FAIL: no MANIFEST.sha256: the logs' sha256 (python tools/check.py --write-manifest "
        f"{d} writes it from the logs as they are); no previous/"
        in line
    )
