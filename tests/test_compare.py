"""tools/compare.py on tests/fake_train.py, a stand-in trainer that writes a valid log at once."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
COMPARE = REPO / "tools" / "compare.py"
FAKE = REPO / "tests" / "fake_train.py"
IDEAS_HEADER = "| date | idea (against) | loss | time | verdict | folder |"
# A record's frozen script in the temporary repositories: fake_train.py stands for it. A fork is
# stored as a diff against such a script, never against a working-tree file.
BASE = "records/cpu_shakespeare/2025-01-01_Base/train_gpt.py"


def with_base(root):
    """root as a repository with one record's frozen script, BASE (a copy of fake_train.py), so
    that --freeze has a script to store forks against. The check runs with --records pointing at
    an empty folder: the stand-in record holds no logs."""
    (root / BASE).parent.mkdir(parents=True)
    (root / BASE).write_bytes(FAKE.read_bytes())
    (root / "no_records").mkdir()
    return root


def compare(tmp_path, *args, **kw):
    return subprocess.run(
        [sys.executable, str(COMPARE), "--out", str(tmp_path / "out"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def test_alternates_arms_with_shared_seeds_and_welch_p_values(tmp_path):
    p = compare(
        tmp_path,
        "-n",
        "3",
        "--seed",
        "10",
        "--arm",
        f"base={FAKE} --loss=4.0 --ms=1000",
        "--arm",
        f"fork={FAKE} --loss=3.9 --ms=700",
    )
    assert p.returncode == 0, p.stderr
    rows = [line.split("\t") for line in (tmp_path / "out" / "runs.tsv").read_text().splitlines()]
    assert [(r[0], r[1]) for r in rows] == [
        ("base", "10"),
        ("fork", "10"),
        ("base", "11"),
        ("fork", "11"),
        ("base", "12"),
        ("fork", "12"),
    ]
    # fake_train: loss L + 0.01 * (seed % 5), time M + seed ms
    base_loss, fork_loss = [4.0, 4.01, 4.02], [3.9, 3.91, 3.92]
    base_s, fork_s = [1.010, 1.011, 1.012], [0.710, 0.711, 0.712]
    p_loss = stats.ttest_ind(fork_loss, base_loss, equal_var=False).pvalue
    p_time = stats.ttest_ind(fork_s, base_s, equal_var=False).pvalue
    fork_line = next(line for line in p.stdout.splitlines() if line.startswith("fork "))
    assert f" {np.mean(fork_loss):.4f} ± 0.0100 " in fork_line
    assert f" {p_loss:.2g} " in fork_line and f" {p_time:.2g} " in fork_line
    base_line = next(line for line in p.stdout.splitlines() if line.startswith("base "))
    assert f" {np.mean(base_loss):.4f} ± 0.0100 " in base_line and "     -  " in base_line
    assert (tmp_path / "out" / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_ctrl_c_keeps_finished_runs(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            str(COMPARE),
            "--out",
            str(tmp_path / "out"),
            "-n",
            "3",
            "--arm",
            f"fast={FAKE}",
            "--arm",
            f"slow={FAKE} --sleep=60",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("[fast seed 1] val_loss 4.0100"), first
        proc.send_signal(signal.SIGINT)  # while the slow arm runs
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "interrupted: the finished runs above are kept" in out
    assert len((tmp_path / "out" / "runs.tsv").read_text().splitlines()) == 1
    assert any(line.startswith("fast ") and " 1  4.0100" in line for line in out.splitlines())
    assert any(line.startswith("slow ") and "no finished runs" in line for line in out.splitlines())


def test_bad_arms_and_failed_runs(tmp_path):
    p = compare(tmp_path, "--arm", "nameless")
    assert (
        p.returncode == 2
        and p.stderr.strip() == "error: --arm 'nameless': expected NAME=SCRIPT [--name=value ...]"
    )
    p = compare(tmp_path, "--arm", "a=notes.txt")
    assert (
        p.returncode == 2
        and p.stderr.strip()
        == "error: --arm 'a=notes.txt': SCRIPT is neither a .py file nor an arm folder"
    )
    failing = tmp_path / "fails.py"
    failing.write_text("import sys\nfor i in range(7):\n    print(f'line {i}')\nsys.exit(3)\n")
    p = compare(tmp_path, "-n", "1", "--arm", f"ok={FAKE}", "--arm", f"bad={failing}")
    assert p.returncode == 1, p.stdout + p.stderr
    out = p.stdout.splitlines()
    at = out.index(f"[bad seed 1] {failing} failed with exit code 3; its last output lines:")
    assert out[at + 1 : at + 6] == [f"    line {i}" for i in range(2, 7)]  # the last 5
    assert p.stderr == "error: 1 run(s) failed; their output is above\n"


@pytest.mark.parametrize("script", ["missing.py", "folder.py"])
def test_an_arm_whose_script_is_not_a_file_is_refused_before_any_run(tmp_path, script):
    (tmp_path / "folder.py").mkdir()
    p = compare(tmp_path, "--arm", f"base={FAKE}", "--arm", f"fork={script} --loss=3.9")
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1
    if script == "missing.py":
        assert p.stderr == (
            f"error: --arm fork: script {script} not found in --workdir . "
            "(paths are relative to it)\n"
        )
    else:  # a folder is an arm folder, or nothing: it has no fork.diff
        assert (
            p.stderr.startswith(f"error: --arm 'fork={script} --loss=3.9': ")
            and "no fork.diff" in p.stderr
        )
    assert p.stdout == "" and not (tmp_path / "logs").exists()  # the base arm did not run either


@pytest.mark.parametrize("n", ["0", "-2"])
def test_fewer_than_one_run_is_refused(tmp_path, n):
    p = compare(tmp_path, "-n", n, "--arm", f"base={FAKE}")
    assert p.returncode == 2 and p.stderr == f"error: -n {n}: runs per arm must be at least 1\n"
    assert p.stdout == "" and not (tmp_path / "logs").exists()


def test_ctrl_c_lets_the_running_child_log_its_interruption_and_freezes_nothing(tmp_path):
    exp = with_base(tmp_path) / "experiments" / "2025-01-01_Slow"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(COMPARE),
            "--out",
            str(tmp_path / "out"),
            "-n",
            "2",
            "--arm",
            f"slow={FAKE} --sleep=600",
            "--freeze",
            str(exp),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        log = None
        for _ in range(1200):  # up to 60 s for the child to start and write its log's head
            log = (
                next((tmp_path / "logs").glob("*.txt"), None)
                if (tmp_path / "logs").exists()
                else None
            )
            if log is not None and log.read_text().count("=" * 100) == 3:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            pytest.fail(f"the slow arm wrote no log head in 60 s: {log}")
        proc.send_signal(signal.SIGINT)  # to compare only, as the child sleeps in its first run
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert log.read_text().endswith(
        "\ninterrupted after step 0 (0ms of training); the log above is complete\n"
    )
    assert "interrupted: the finished runs above are kept" in out
    assert err == (
        f"error: not frozen into {exp}: interrupted (finished runs per arm of -n 2: slow 0); "
        "rerun the whole set\n"
    )
    assert not exp.exists()


def test_freeze_refuses_a_set_with_a_failed_run(tmp_path):
    exp, failing = with_base(tmp_path) / "experiments" / "2025-01-01_X", tmp_path / "fails.py"
    failing.write_text("import sys\nsys.exit(3)\n")
    p = compare(
        tmp_path,
        "-n",
        "2",
        "--arm",
        f"base={FAKE}",
        "--arm",
        f"bad={failing}",
        "--freeze",
        str(exp),
    )
    assert p.returncode == 1
    assert f"[bad seed 1] {failing} failed with exit code 3; it printed nothing" in p.stdout
    assert p.stderr == (
        f"error: not frozen into {exp}: 2 run(s) failed (finished runs per arm of -n 2: base 2, "
        "bad 0); rerun the whole set\n"
    )
    assert not exp.exists()


def test_freeze_keeps_logs_diff_and_table_and_reruns_an_arm_folder(tmp_path):
    """--freeze: logs, a fork.diff against the record's script, the table; the frozen arm folder
    then runs as a SCRIPT, as its rebuilt source byte for byte (its new log embeds the fork's exact
    source)."""
    fork = with_base(tmp_path) / "fork.py"
    fork.write_text(FAKE.read_text() + "# the fork\n")
    exp = tmp_path / "experiments" / "2025-01-01_Fake"
    p = compare(
        tmp_path,
        "-n",
        "2",
        "--arm",
        f"base={BASE} --loss=4.0",
        "--arm",
        f"fork={fork} --loss=3.9",
        "--freeze",
        str(exp),
    )
    assert p.returncode == 0, p.stderr
    assert (
        exp / "arms.tsv"
    ).read_text() == f"base\t{BASE} --loss=4.0\nfork\texperiments/2025-01-01_Fake/fork --loss=3.9\n"
    assert not (exp / "base" / "fork.diff").exists() and not list(exp.rglob("*.py"))
    assert f"fork: experiments/2025-01-01_Fake/fork/fork.diff from {BASE}: +1 -0\n" in p.stdout
    last3 = len(FAKE.read_text().splitlines()) - 2  # the hunk holds the base's last 3 lines
    assert (exp / "fork" / "fork.diff").read_text() == (
        f"--- {BASE}\n+++ experiments/2025-01-01_Fake/fork\n"
        f"@@ -{last3},3 +{last3},4 @@\n"
        + "".join(f" {line}\n" for line in FAKE.read_text().splitlines()[-3:])
        + "+# the fork\n"
    )
    for arm in ("base", "fork"):
        assert len(list((exp / arm).glob("*.txt"))) == 2
    table = p.stdout[p.stdout.index("arm ") : p.stdout.index("fork: experiments")].rstrip("\n")
    readme = (exp / "README.md").read_text()
    assert table in readme and (exp / "compare.png").exists()
    row = "| 2025-01-01 | TODO: the idea (against what), n | TODO | TODO | TODO "
    row += "| [2025-01-01_Fake](.) |"
    assert f"## Summary\n\n{IDEAS_HEADER}\n|---|---|---|---|---|---|\n{row}\n" in readme
    (tmp_path / "README.md").write_text("<!-- records:begin -->\n<!-- records:end -->\n")
    index = tmp_path / "experiments" / "README.md"
    index.write_text("# Ideas tried\n\n<!-- ideas:begin -->\n<!-- ideas:end -->\n")
    check = [
        sys.executable,
        str(REPO / "tools" / "check.py"),
        "--records",
        str(tmp_path / "no_records"),
        "--experiments",
        str(tmp_path / "experiments"),
    ]
    stub = subprocess.run(check, capture_output=True, text=True)
    assert stub.returncode == 1
    assert (
        "experiments/2025-01-01_Fake  FAIL: README.md still holds the stub's TODO (lines 7, 11): "
        "fill in what was changed and why, and its Summary row\n" in stub.stdout
    )
    filled = row.replace(
        "TODO: the idea (against what), n | TODO | TODO | TODO ", "Idea | 1 | 2 | 3 "
    )
    (exp / "README.md").write_text(
        readme.replace(row, filled).replace("why\n\nTODO\n", "why\n\nA test.\n")
    )
    stale = subprocess.run(check, capture_output=True, text=True)
    assert stale.returncode == 1 and "experiments/2025-01-01_Fake  OK" in stale.stdout
    assert (
        "experiments/README.md  FAIL: the ideas table is stale: python tools/check.py --table "
        "rewrites it" in stale.stdout
    )
    ok = subprocess.run([*check, "--table"], capture_output=True, text=True)
    assert ok.returncode == 0 and "experiments/README.md  OK" in ok.stdout, ok.stdout + ok.stderr
    assert filled.replace("](.)", "](2025-01-01_Fake)") in index.read_text()

    again = compare(
        tmp_path,
        "-n",
        "1",
        "--out",
        str(tmp_path / "again"),
        "--arm",
        "again=experiments/2025-01-01_Fake/fork",
    )
    assert again.returncode == 0, again.stderr
    log = tmp_path / again.stdout.split("[again seed 1] val_loss ")[1].splitlines()[0].split()[-1]
    assert log.read_text().split("=" * 100 + "\n")[1] == fork.read_text()

    log = next((exp / "fork").glob("*.txt"))
    log.write_text(
        log.read_text().replace("val_loss:3.9", "val_loss:3.8")
    )  # both the step and final lines
    bad = subprocess.run(check, capture_output=True, text=True)
    assert bad.returncode == 1 and f"FAIL: fork/{log.name}: edited since the manifest" in bad.stdout
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "check.py"), "--write-manifest", str(exp)],
        check=True,
        capture_output=True,
    )  # a manifest rewritten too: the README's table still tells
    bad = subprocess.run(check, capture_output=True, text=True)
    assert (
        bad.returncode == 1
        and "README.md does not hold the table recomputed from the logs" in bad.stdout
    )
    assert (
        compare(tmp_path, "--arm", f"base={FAKE}", "--freeze", str(exp)).returncode == 2
    )  # never overwritten

    again = (
        tmp_path / "experiments" / "2025-01-02_Again"
    )  # an arm that runs a stored arm folder names it
    p = compare(
        tmp_path,
        "-n",
        "1",
        "--out",
        str(tmp_path / "out2"),
        "--arm",
        f"base={FAKE}",
        "--arm",
        "same=experiments/2025-01-01_Fake/fork --loss=3.7",
        "--freeze",
        str(again),
    )
    assert p.returncode == 0, p.stderr
    assert (again / "arms.tsv").read_text().splitlines()[
        1
    ] == "same\texperiments/2025-01-01_Fake/fork --loss=3.7"
    assert not (again / "same" / "fork.diff").exists(), (
        "the fork is stored once, not copied as a second diff"
    )

    third = (
        tmp_path / "experiments" / "2025-01-03_Tracked"
    )  # an arm that runs another tracked script names it
    p = compare(
        tmp_path,
        "-n",
        "1",
        "--out",
        str(tmp_path / "out3"),
        "--arm",
        "fork=experiments/2025-01-01_Fake/fork",
        "--arm",
        f"plain={FAKE} --loss=3.6",
        "--freeze",
        str(third),
    )
    assert p.returncode == 0, p.stderr
    assert (third / "arms.tsv").read_text().splitlines()[1] == f"plain\t{BASE} --loss=3.6"
    assert not (third / "plain" / "fork.diff").exists(), (
        "the record's script that holds the source is named, not stored again as a diff"
    )
