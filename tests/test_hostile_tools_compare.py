"""Issue 29 (hostile inputs, round 3), tools/compare.py: seeds explicit and paired; names, paths and
every arm's flags checked before any run; a fork always stored as a diff against a frozen script,
the nearest one; SIGTERM ends compare as Ctrl-C does; every filesystem error is one line and
nothing is left half-written. compare.main runs in-process where it can (tests/fake_train.py is
the trainer); a subprocess only where a signal or dropped privileges need one."""

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

import compare
import forkdiff
import layout
import plots

REPO = Path(__file__).resolve().parent.parent
FAKE = REPO / "tests" / "fake_train.py"
BASE = "records/cpu_shakespeare/2025-01-01_Base/train_gpt.py"  # a record's script: fake_train.py
EXP = "experiments/2025-01-01_Fake"


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A repository-like folder holding one record's frozen script (BASE, fake_train.py), the
    working directory of the test."""
    (tmp_path / BASE).parent.mkdir(parents=True)
    shutil.copyfile(FAKE, tmp_path / BASE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*argv):
    """compare.main in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = compare.main(["--out", "out", *argv])
    return code, out.getvalue(), err.getvalue()


def refused(*argv):
    """compare's one error line for argv, having run nothing and written nothing."""
    code, out, err = run(*argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert not Path("logs").exists() and not Path("out").exists()
    return err.rstrip("\n")


# 1. Seeds are explicit and paired.


@pytest.mark.parametrize(
    "seed, n, why",
    [
        ("0", "1", "0 lets each run draw its own seed, unpairing the arms; "),
        ("-1", "1", ""),
        ("4294967296", "1", ""),
        ("4294967295", "2", ""),  # the second round's seed would be 2^32
    ],
)
def test_a_seed_outside_1_to_2_to_the_32_is_refused_with_the_range(root, seed, n, why):
    assert refused("--seed", seed, "-n", n, "--arm", f"a={FAKE}") == (
        f"error: --seed {seed}: {why}the seeds SEED..SEED+n-1 must lie in [1, 2^32) = "
        f"[1, 4294967296)"
    )


def test_an_arm_that_sets_its_own_seed_is_refused(root):
    assert refused("--arm", f"a={FAKE}", "--arm", f"b={FAKE} --seed=7") == (
        "error: --arm b: --seed=7: the seed is compare's to set, the same in every arm "
        "(--seed SEED: round i runs seed SEED+i)"
    )


def test_a_run_whose_log_holds_another_seed_counts_as_failed(root):
    """A script that does not take the seed it is given (as 0 did: a fresh one) unpairs the arms."""
    Path("reseeds.py").write_text(
        FAKE.read_text().replace(
            'f"hparams: track=cpu_shakespeare seed={h.seed}',
            'f"hparams: track=cpu_shakespeare seed={h.seed + 1}',
        )
    )
    code, out, err = run("-n", "1", "--seed", "5", "--arm", f"a={FAKE}", "--arm", "b=reseeds.py")
    assert code == 1 and "[a seed 5] val_loss 4.0000" in out
    assert "[b seed 5] reseeds.py failed; its last output lines:\n    its log ./logs/" in out
    assert (
        " holds seed=6, not 5: the script does not take compare's seed, so the arms would " in out
    )
    assert len(Path("out/runs.tsv").read_text().splitlines()) == 1  # only a's run


# 2. Names and paths are checked before any run.


@pytest.mark.parametrize(
    "arm, line",
    [
        ("a/b", "arm name 'a/b' holds '/'"),
        ("a\tb", "arm name 'a\\tb' holds a tab"),
        ("..", "arm name '..' holds '..'"),
        ("x..y", "arm name 'x..y' holds '..'"),
        (
            ".hidden",
            "arm name '.hidden' starts with '.' (an arm's name is its folder's: letters, "
            "digits and _ . - + = ,; the first a letter or digit)",
        ),
        ("README.md", "arm name 'README.md' names a file of the experiment folder: pick another"),
        ("a b", "arm name 'a b' holds ' '"),
        ("", "the arm's name is empty"),
    ],
)
def test_an_arm_name_that_cannot_name_its_folder_is_refused(root, arm, line):
    err = refused("--arm", f"ok={FAKE}", "--arm", f"{arm}={FAKE}", "--freeze", EXP)
    assert err.startswith(f"error: --arm {arm + '=' + str(FAKE)!r}: {line}"), err
    assert not Path("experiments").exists()


def test_two_arms_of_one_name_are_refused(root):
    assert refused("--arm", f"a={FAKE}", "--arm", f"a={FAKE} --loss=3") == (
        "error: --arm a: two arms are named a (an arm's name is its folder's)"
    )


@pytest.mark.parametrize(
    "folder, line",
    [
        (
            "exp",
            "--freeze exp: an experiment folder is experiments/<YYYY-MM-DD>_<Name> in the "
            "repository (its arms' scripts and bases are named from there)",
        ),
        (
            "experiments/NoDate",
            "--freeze experiments/NoDate: an experiment folder is "
            "experiments/<YYYY-MM-DD>_<Name> in the repository (its arms' scripts and bases are "
            "named from there)",
        ),
        (EXP, f"--freeze {EXP} already exists (a frozen experiment is never overwritten)"),
    ],
)
def test_a_freeze_folder_outside_experiments_or_existing_is_refused(root, folder, line):
    (root / EXP).mkdir(parents=True)
    assert refused("--arm", f"a={FAKE}", "--freeze", folder) == f"error: {line}"


def test_a_file_where_experiments_belongs_is_refused_before_any_run(root):
    Path("experiments").write_text("a file\n")
    assert refused("--arm", f"a={FAKE}", "--freeze", EXP) == (
        f"error: --freeze {EXP}: {root / 'experiments'}: a file where a folder belongs (make it "
        f"writable, or freeze elsewhere)"
    )


@pytest.mark.parametrize("out", ["F", "F/sub"])
def test_a_file_where_the_out_folder_belongs_is_refused_before_any_run(root, out):
    Path("F").write_text("a file\n")
    code, stdout, err = run("--arm", f"a={FAKE}", "--out", out)
    assert code == 2 and stdout == "" and not Path("logs").exists()
    assert err == (
        f"error: --out {out}: {root / 'F'}: a file where a folder belongs (name another folder "
        f"with --out)\n"
    )


def unprivileged(cmd):
    """cmd run without root's power to write where permissions forbid (as a user would be)."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("root, and no setpriv to drop CAP_DAC_OVERRIDE with")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]


def test_a_read_only_experiments_folder_is_refused_before_any_run(root):
    (root / "experiments").mkdir()
    (root / "experiments").chmod(0o555)
    try:
        p = subprocess.run(
            unprivileged(
                [sys.executable, str(REPO / "tools" / "compare.py"), "--out", "out"]
                + ["--arm", f"a={FAKE}", "--freeze", EXP]
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        (root / "experiments").chmod(0o755)
    assert p.returncode == 2 and p.stdout == "" and not (root / "logs").exists()
    assert p.stderr == (
        f"error: --freeze {EXP}: {root / 'experiments'}: Permission denied (make it writable, or "
        f"freeze elsewhere)\n"
    )


def test_every_arms_flags_are_checked_against_its_script_before_round_1(root):
    """A bad flag of the second arm stops compare before the first arm runs (it ran every round)."""
    assert refused("--arm", f"a={FAKE}", "--arm", f"b={FAKE} --foo=1") == (
        f"error: --arm b: {FAKE} refuses its flags: fake_train.py: unknown argument '--foo=1'; "
        f"valid: seed, loss, ms, sleep"
    )
    assert refused("--arm", f"a={FAKE}", "--arm", f"typo={FAKE} --loss=4.o") == (
        f"error: --arm typo: {FAKE} refuses its flags: fake_train.py: --loss wants a float, got "
        f"'4.o'"
    )


@pytest.mark.parametrize(
    "script, flags, line",
    [
        ("train_gpt.py", "--foo=1", "train_gpt.py: unknown hyperparameter --foo; valid: track, "),
        ("train_gpt.py", "--num_layers=0", "train_gpt.py: --num_layers=0 is out of range; valid: "),
        (
            "records/cpu_shakespeare/2026-12-03_TwoLayers/train_gpt.py",
            "--seq_len=x",
            "train_gpt.py: --seq_len wants a int, got 'x'",
        ),
    ],
)
def test_the_trainers_own_argument_check_runs_before_round_1_without_training(
    root, script, flags, line
):
    """The real scripts' parse_args, from their source: no torch, no run, a second at most."""
    start = time.perf_counter()
    err = refused(
        "--arm", f"a={FAKE}", "--arm", f"b={REPO / script} --track=cpu_shakespeare {flags}"
    )
    assert err.startswith(f"error: --arm b: {REPO / script} refuses its flags: {line}"), err
    assert time.perf_counter() - start < 10


# 3. A fork is always stored as a diff against a frozen script.


def frozen(*argv):
    code, out, err = run("-n", "1", *argv, "--freeze", EXP)
    assert code == 0, out + err
    return out


def test_the_root_script_edited_in_place_is_stored_as_a_diff_against_the_record(root):
    """train_gpt.py edited in place and frozen as an arm: arms.tsv must not name it (a checkout
    would lose the fork); its fork.diff starts from the record's script."""
    Path("train_gpt.py").write_text(FAKE.read_text() + "# edited in place\n")
    out = frozen("--arm", "edited=train_gpt.py --loss=3.9")
    assert layout.read_arms(EXP) == [("edited", [f"{EXP}/edited", "--loss=3.9"])]
    assert Path(f"{EXP}/edited/fork.diff").read_text().startswith(f"--- {BASE}\n")
    assert f"edited: {EXP}/edited/fork.diff from {BASE}: +1 -0\n" in out


def test_each_fork_is_stored_against_the_frozen_script_nearest_to_it(root):
    """A fork of another record's script, compared against BASE, is stored as its small diff from
    that record's script, not as a large one from the first arm's."""
    other = Path("records/cpu_shakespeare/2025-01-02_Other/train_gpt.py")
    other.parent.mkdir()
    far = FAKE.read_text().replace("    ", "\t")  # every indented line differs from BASE
    other.write_text(far)
    Path("idea.py").write_text(far.replace("final, total =", "# the idea\n\tfinal, total ="))
    out = frozen("--arm", f"base={BASE}", "--arm", "idea=idea.py")
    assert layout.read_arms(EXP) == [("base", [BASE]), ("idea", [f"{EXP}/idea"])]
    assert Path(f"{EXP}/idea/fork.diff").read_text().startswith(f"--- {other}\n")
    assert f"idea: {EXP}/idea/fork.diff from {other}: +1 -0\n" in out


@pytest.mark.parametrize(
    "base, line",
    [
        (
            "train_gpt.py",
            "train_gpt.py is not a frozen script (the root train_gpt.py changes with "
            "every record): a fork's base is a record's train_gpt.py "
            "(records/<track>/<YYYY-MM-DD>_<Name>/train_gpt.py) or an arm folder",
        ),
        (
            "records",
            "records is a folder but no arm folder (experiments/<YYYY-MM-DD>_<Name>/<arm>,"
            " beside arms.tsv): a fork's base is a record's train_gpt.py or an arm folder",
        ),
        ("missing.py", "missing.py does not exist"),
    ],
)
def test_a_base_that_is_no_frozen_script_is_refused_before_any_run(root, base, line):
    Path("train_gpt.py").write_text(FAKE.read_text())
    assert (
        refused("--arm", f"a={FAKE}", "--freeze", EXP, "--base", base) == f"error: --base: {line}"
    )


@pytest.mark.parametrize("state", ["untracked", "modified"])
def test_a_record_script_that_is_not_what_git_holds_is_refused_as_base(root, state):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    if state == "modified":
        subprocess.run([*git, "add", BASE], check=True)
        subprocess.run([*git, "commit", "-qm", "base"], check=True)
        Path(BASE).write_text(FAKE.read_text() + "# edited\n")
    why = (
        f"{BASE} is not tracked by git, so a clone would lack it: name the tracked script it "
        f"forks, e.g. --base records/<track>/<record>/train_gpt.py"
        if state == "untracked"
        else f"{BASE} differs from what git holds (git diff HEAD -- {BASE} shows how), so a clone "
        f"would rebuild another fork: restore it (git checkout HEAD -- {BASE})"
    )
    assert refused("--arm", f"a={FAKE}", "--freeze", EXP, "--base", BASE) == f"error: --base: {why}"
    # Nor is it a candidate for the nearest base: with no other, the fork has nothing to start from.
    Path("fork.py").write_text(FAKE.read_text() + "# a fork\n")
    assert refused("--arm", "a=fork.py", "--freeze", EXP) == (
        f"error: --freeze: arm a: no record's train_gpt.py under {root / 'records'} to store its "
        f"fork.diff against (--base names a record's script or an arm folder)"
    )


def test_an_arm_folder_whose_source_changed_since_its_logs_runs_with_a_warning(root):
    Path("fork.py").write_text(FAKE.read_text() + "# the fork\n")
    frozen("--arm", f"base={BASE}", "--arm", "fork=fork.py")
    diff = Path(f"{EXP}/fork/fork.diff")
    diff.write_text(diff.read_text().replace("+# the fork\n", "+# another fork\n"))
    code, out, err = run("-n", "1", "--arm", f"again={EXP}/fork")
    assert code == 0, err
    assert err == (
        f"warning: --arm again: {EXP}/fork rebuilds another source than the one its own logs ran "
        f"(its fork.diff or its base changed since them; python tools/check.py names what): "
        f"running the rebuilt one\n"
    )


# 6. Filesystem errors are one line; nothing is left half-written.


def test_a_freeze_that_fails_midway_leaves_nothing(root, monkeypatch):
    draw = plots.comparison

    def full(arms, results, path):  # the disk fills while the folder is written
        if "experiments" in str(path):
            raise OSError(28, "No space left on device", str(root / EXP / "compare.png"))
        draw(arms, results, path)

    monkeypatch.setattr(plots, "comparison", full)
    Path("fork.py").write_text(FAKE.read_text() + "# the fork\n")
    code, out, err = run(
        "-n", "1", "--arm", f"base={BASE}", "--arm", "fork=fork.py", "--freeze", EXP
    )
    assert code == 2 and err == (
        f"error: --freeze {EXP}: {root / EXP / 'compare.png'}: No space left on device (nothing "
        f"frozen; the runs are listed in out/runs.tsv)\n"
    )
    assert sorted(os.listdir("experiments")) == []  # no folder, no hidden partial one
    assert len(Path("out/runs.tsv").read_text().splitlines()) == 2


def test_sigterm_ends_compare_as_ctrl_c_does(root):
    """SIGTERM (and SIGHUP) to compare: the running child is stopped with SIGINT and logs where it
    stopped, compare prints one line and the table, keeps the finished runs, exits 128 + signal."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "compare.py"), "--out", "out", "-n", "2"]
        + ["--arm", f"fast={FAKE}", "--arm", f"slow={FAKE} --sleep=60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("[fast seed 1] val_loss 4.0100"), first
        for _ in range(600):  # the slow arm's log head: then it sleeps
            logs = [p for p in Path("logs").glob("*.txt") if p.read_text().count("=" * 100) == 3]
            if len(logs) == 2:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    assert "stopped by SIGTERM: the finished runs above are kept\n" in out
    assert any(line.startswith("fast ") and " 1  4.0100" in line for line in out.splitlines())
    assert "Traceback" not in err and "BrokenPipe" not in err
    end = "\ninterrupted after step 0 (0ms of training); the log above is complete\n"
    assert [p.read_text().endswith(end) for p in sorted(logs, key=os.path.getmtime)] == [
        False,
        True,
    ]
    assert len(Path("out/runs.tsv").read_text().splitlines()) == 1


def test_freeze_plan_names_the_stored_script_of_a_source_once(root):
    """Two arms of one fork (a sweep) share its folder's diff; an arm running the record's script
    by another path is named by the record's script."""
    Path("fork.py").write_text(FAKE.read_text() + "# the fork\n")
    frozen("--arm", f"base={FAKE}", "--arm", "f1=fork.py --loss=3", "--arm", "f2=fork.py --loss=2")
    assert layout.read_arms(EXP) == [
        ("base", [BASE]),
        ("f1", [f"{EXP}/f1", "--loss=3"]),
        ("f2", [f"{EXP}/f1", "--loss=2"]),
    ]
    assert not Path(f"{EXP}/f2/fork.diff").exists()
    assert forkdiff.source(f"{EXP}/f2", str(root)) == Path("fork.py").read_text()
