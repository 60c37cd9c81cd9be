"""tools/forkdiff.py (forks as diffs), tools/forks.py (its command) and how tools/check.py verifies
them: on the repository's own experiment folders, and on a folder frozen by tools/compare.py from
tests/fake_train.py runs."""

import io
import os
import random
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

import check
import forkdiff
import forks as forks_cli
import layout
import manifest
import tables
import verify
from logformat import split_log

REPO = Path(__file__).resolve().parent.parent
FAKE = REPO / "tests" / "fake_train.py"
BASE = "records/cpu_shakespeare/2025-01-01_Base/train_gpt.py"  # a record's script, fake_train.py
EXP = "experiments/2025-01-01_Fake"


def test_diff_round_trip_is_exact():
    """Any old/new pair, with \\r\\n, a missing last newline, empty files:
    apply(make(old, new)) == new."""
    rnd = random.Random(0)
    pieces = ["a\n", "b\n", "\n", "c\r\n", "d", "e\x0c\n", "é\n"]
    for _ in range(2000):
        old = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 10)))
        new = forkdiff.split_lines(old)
        for _ in range(rnd.randint(1, 4)):
            if new and rnd.random() < 0.4:
                del new[rnd.randrange(len(new))]
            else:
                new.insert(rnd.randint(0, len(new)), rnd.choice(pieces))
        new = "".join(new)
        diff = forkdiff.make_diff(old, new, "old", "new")
        assert (diff == "") == (old == new)
        if diff:
            assert forkdiff.apply_diff(diff, old, "t") == new


def test_apply_refuses_any_mismatch():
    old = "".join(f"line {k}\n" for k in range(20))
    new = old.replace("line 10\n", "line ten\n")
    diff = forkdiff.make_diff(old, new, "old", "new")
    with pytest.raises(forkdiff.ForkError, match=r"t: line 4: does not match line 8 of the base"):
        forkdiff.apply_diff(
            diff, old.replace("line 7\n", "line 7 \n"), "t"
        )  # a context line differs
    with pytest.raises(forkdiff.ForkError, match="hunk header's new line number"):
        forkdiff.apply_diff(diff.replace("+8,7", "+9,7"), old, "t")
    with pytest.raises(forkdiff.ForkError, match="ends inside a hunk"):
        forkdiff.apply_diff(diff[: diff.rindex(" line 13")], old, "t")
    with pytest.raises(forkdiff.ForkError, match="not a unified diff"):
        forkdiff.apply_diff("patch me\n", old, "t")


def arm_folders():
    """Every arm folder of experiments/ and every records/**/previous/ of the repository."""
    out = []
    for tsv in sorted((REPO / "experiments").glob("*/arms.tsv")):
        out += [tsv.parent / name for name, _ in layout.read_arms(tsv.parent)]
    return out + sorted((REPO / "records").glob("*/*/previous"))


def test_every_repo_arm_rebuilds_the_source_its_logs_embed():
    """What `python tools/check.py --extract <arm>` prints is every log's embedded source, for every
    arm of every experiment folder (no training)."""
    folders = arm_folders()
    assert len(folders) > 60
    for folder in folders:
        logs = sorted(folder.glob("*.txt"))
        assert logs, folder
        if folder.name == "previous" and not (folder / forkdiff.DIFF).exists():
            continue  # logs of a record's own train_gpt.py: test_records checks those
        rebuilt = forkdiff.source(str(folder.relative_to(REPO)), str(REPO))
        for log in logs:
            assert split_log(layout.read_text(log))[0] == rebuilt, log
    arm = (
        REPO / "experiments" / "2026-11-25_MuPWarmup" / "mup_w64_warmup_lr0.008"
    )  # a fork of a fork, no diff
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "check.py"), "--extract", str(arm)],
        capture_output=True,
        check=True,
    ).stdout
    assert out == split_log(layout.read_text(next(arm.glob("*.txt"))))[0].encode()


def test_repo_has_no_script_copies():
    assert not list((REPO / "experiments").rglob("*.py"))
    scripts = [p.read_bytes() for p in (REPO / "records").rglob("*.py")]
    assert len(set(scripts)) == len(scripts) > 1


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """A repository-like folder with a record's frozen script (a copy of fake_train.py; the check
    runs with --records no_records/, as the stand-in record holds no logs) and
    experiments/2025-01-01_Fake frozen by tools/compare.py: arms base (the base), fork and fork_b
    (one fork of it, two settings), 2 runs each; its README's stub filled in, and the ideas table in
    experiments/README.md written by tools/check.py --table from its Summary row."""
    root = tmp_path_factory.mktemp("repo")
    (root / BASE).parent.mkdir(parents=True)
    (root / "no_records").mkdir()
    shutil.copyfile(FAKE, root / BASE)
    (root / "fork.py").write_text(
        FAKE.read_text().replace("    ruler = ", "    ruler = '=' * 100  # the fork\n    ruler = ")
    )
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "compare.py"),
            "-n",
            "2",
            "--out",
            "out",
            "--arm",
            f"base={BASE} --loss=4.0",
            "--arm",
            "fork=fork.py --loss=3.9",
            "--arm",
            "fork_b=fork.py --loss=3.8",
            "--freeze",
            EXP,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    fill_in(root / EXP / "README.md")
    (root / "README.md").write_text(f"{tables.RECORDS_BEGIN}\n{tables.RECORDS_END}\n")
    (root / "experiments" / "README.md").write_text(
        f"# Ideas tried\n\n{tables.IDEAS_BEGIN}\n{tables.IDEAS_END}\n"
    )
    assert checked(root, "--table")[0] == 0
    return root


def fill_in(readme):
    """A frozen README's stub filled in: what was changed and why, and its Summary row."""
    text = readme.read_text().replace("why\n\nTODO\n", "why\n\nA test.\n")
    readme.write_text(
        text.replace("TODO: the idea (against what), n | TODO | TODO | TODO ", "Idea | 1 | 2 | 3 ")
    )


def checked(root, *args, folder=EXP):
    """tools/check.py (in-process) on the experiments of root: (exit code, the line of folder, by
    default the Fake experiment's)."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = check.main(
            [
                "--records",
                str(root / "no_records"),
                "--experiments",
                str(root / "experiments"),
                *args,
            ]
        )
    [line] = [s for s in out.getvalue().splitlines() if s.startswith(f"{folder}  ")]
    return code, line


def copy_of(frozen, tmp_path):
    shutil.copytree(frozen, tmp_path / "repo")
    return tmp_path / "repo"


def test_freeze_writes_one_diff_per_fork_and_check_passes(frozen):
    exp = frozen / EXP
    assert layout.read_arms(exp) == [
        ("base", [BASE, "--loss=4.0"]),
        ("fork", [f"{EXP}/fork", "--loss=3.9"]),
        ("fork_b", [f"{EXP}/fork", "--loss=3.8"]),
    ]
    assert sorted(p.name for p in exp.rglob("*") if p.is_file() and p.suffix != ".txt") == [
        "MANIFEST.sha256",
        "README.md",
        "arms.tsv",
        "compare.png",
        "fork.diff",
    ]
    listed = (exp / manifest.MANIFEST).read_text().splitlines()
    assert [m.split("  ")[1] for m in listed] == sorted(
        str(p.relative_to(exp)) for p in exp.rglob("*.txt")
    )
    assert len(listed) == 6 and manifest.manifest_errors(exp, EXP) == []
    diff = (exp / "fork" / forkdiff.DIFF).read_text()
    assert (
        diff.startswith(f"--- {BASE}\n+++ {EXP}/fork\n@@ ")
        and "+    ruler = '=' * 100  # the fork\n" in diff
    )
    assert checked(frozen) == (0, f"{EXP}  OK")


def test_check_refuses_a_wrong_diff(frozen, tmp_path):
    root = copy_of(frozen, tmp_path)
    diff = root / EXP / "fork" / forkdiff.DIFF
    diff.write_text(diff.read_text().replace("# the fork", "# another fork"))
    code, line = checked(root)
    assert code == 1 and line.startswith(
        f"{EXP}  FAIL: {EXP}/fork/fork.diff: applied to {BASE}, it does not give "
        f"the source the logs embed (python tools/forks.py {EXP}/fork BASE rewrites it "
        f"from the logs); "
    )
    diff.write_text(
        diff.read_text()
        .replace("+    ruler = '=' * 100  # another fork\n", "+    ruler = '=' * 100  # the fork\n")
        .replace("\n     ruler = ", "\n     ruler  = ")
    )  # a context line edited
    code, line = checked(root)
    ruler_line = (REPO / "tests" / "fake_train.py").read_text().splitlines().index(
        '    ruler = "=" * 100'
    ) + 1
    assert code == 1
    assert (
        f"{EXP}/fork/fork.diff: line 8: does not match line {ruler_line} of the base "
        "(python tools/forks.py" in line
    ), line


def test_check_refuses_a_missing_base(frozen, tmp_path):
    root = copy_of(frozen, tmp_path)
    (root / BASE).unlink()
    code, line = checked(root)
    assert code == 1
    assert (
        f"; {EXP}/fork/fork.diff: its base {BASE} does not exist or is unreadable "
        "(python tools/forks.py" in line
    )
    assert f"arms.tsv: base: {BASE} does not exist or is unreadable" in line


def test_check_refuses_two_sources_in_one_arm(frozen, tmp_path):
    root = copy_of(frozen, tmp_path)
    log = min((root / EXP / "base").glob("*.txt"))
    first = min((root / EXP / "fork").glob("*.txt")).name
    copy = root / EXP / "fork" / ("f" * 8 + log.name[8:])  # sorts after the fork's own logs
    copy.write_text(log.read_text().replace(f"log: logs/{log.name}", f"log: logs/{copy.name}"))
    manifest.write_manifest(root / EXP)  # as if frozen so: the sources rule is what catches it
    code, line = checked(root)
    assert code == 1 and line.endswith(
        f"; {EXP}/fork/{copy.name} embeds another source than {first}: one script "
        f"per folder, move each script's logs to a folder of its own"
    )


def test_check_refuses_a_copy_and_a_stale_arms_line(frozen, tmp_path):
    root = copy_of(frozen, tmp_path)
    shutil.copyfile(root / "fork.py", root / EXP / "fork" / "train_gpt.py")
    tsv = root / EXP / "arms.tsv"
    tsv.write_text(tsv.read_text().replace(f"fork_b\t{EXP}/fork", f"fork_b\t{BASE}"))
    code, line = checked(root)
    assert (
        code == 1
        and f"{EXP}/fork/train_gpt.py: a copy of a script the logs embed already: delete it" in line
    )
    assert f"arms.tsv: fork_b: {BASE} is not the source its logs embed" in line


def test_forks_cli_rewrites_the_diff_from_the_logs(frozen, tmp_path):
    root = copy_of(frozen, tmp_path)
    diff = root / EXP / "fork" / forkdiff.DIFF
    good = diff.read_bytes()
    diff.write_text("garbage\n")
    p = subprocess.run(
        [sys.executable, str(REPO / "tools" / "forks.py"), f"{EXP}/fork", BASE],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert (
        p.returncode == 0
        and p.stdout == f"wrote {EXP}/fork/fork.diff; its arms.tsv SCRIPT is {EXP}/fork\n"
    )
    assert diff.read_bytes() == good
    assert checked(root)[0] == 0


def test_check_names_a_log_moved_to_another_arm(frozen, tmp_path):
    root = copy_of(frozen, tmp_path)
    log = min((root / EXP / "fork").glob("*.txt"))
    log.rename(root / EXP / "fork_b" / log.name)  # same source, but it ran with --loss=3.9
    manifest.write_manifest(root / EXP)  # the manifest rewritten too: the arm's flags still tell
    code, line = checked(root)
    assert (
        code == 1
        and f"; fork_b/{log.name}: ran with loss=3.9, but arms.tsv says --loss=3.8 (a log moved to "
        f"another arm? move it back)"
        in line
    ), line


def test_flag_values_compare_after_the_trainers_conversion():
    assert (
        verify.flag_mismatches(
            ["--lr=0.0020", "--mup=1", "--qkv_bias=true", "--head_cutoffs=", "--seed=9"],
            {"lr": "0.002", "mup": "True", "qkv_bias": "True", "head_cutoffs": "", "seed": "1"},
        )
        == []
    )
    moved = "(a log moved to another arm? move it back)"
    assert verify.flag_mismatches(["--mup=false", "--optimizer=adam"], {"mup": "True"}) == [
        f"ran with mup=True, but arms.tsv says --mup=false {moved}",
        "arms.tsv says --optimizer=adam, but its script has no hyperparameter optimizer (its "
        "log holds none, and the script refuses unknown flags): fix the arms.tsv line",
    ]  # issue 29: a flag the script does not have is arms.tsv's error, not a moved log


def test_the_ideas_table_names_a_stale_table_a_bad_row_and_a_folder_in_no_row(frozen, tmp_path):
    """experiments/README.md's table is collected from each folder's `## Summary` rows by
    check.py --table; check.py names a table gone stale, a row whose date is not its folder's, and
    a folder that no row names."""
    root = copy_of(frozen, tmp_path)
    index = root / "experiments" / "README.md"
    readme = root / EXP / "README.md"
    assert "| [2025-01-01_Fake](2025-01-01_Fake) |" in index.read_text()
    readme.write_text(readme.read_text().replace("| Idea | 1 |", "| An idea, n=2 | 1 |"))
    code, line = checked(root, folder="experiments/README.md")
    assert code == 1 and line == (
        "experiments/README.md  FAIL: the ideas table is stale: "
        "python tools/check.py --table rewrites it"
    )
    assert checked(root, "--table", folder="experiments/README.md") == (
        0,
        "experiments/README.md  OK",
    )
    assert "| 2025-01-01 | An idea, n=2 |" in index.read_text()

    readme.write_text(
        readme.read_text().replace("| 2025-01-01 | An idea", "| 2025-01-02 | An idea")
    )
    code, line = checked(root, "--table", folder="experiments/README.md")
    assert code == 1 and line == (
        "experiments/README.md  FAIL: 2025-01-01_Fake/README.md: ## Summary row 1: "
        "date 2025-01-02 is not the folder's (2025-01-01)"
    )
    readme.write_text(readme.read_text().split("## Summary")[0])  # no row at all
    code, line = checked(root, "--table", folder="experiments/README.md")
    assert code == 1 and line == (
        "experiments/README.md  FAIL: 2025-01-01_Fake/README.md: no ## Summary row, and no other "
        "folder's row links it (add one)"
    )
    assert "No experiments yet." in index.read_text()


# Issue 29: forks.py refuses a base that is the folder or derives from it, and never leaves a diff
# that makes a checked folder fail.


def forks(*argv):
    """tools/forks.py in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = forks_cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "folder, line",
    [
        ("nonexist", "nonexist: no such folder (FOLDER is an arm folder or a record's previous/)"),
        (
            "experiments",
            "experiments: not an arm folder (experiments/<YYYY-MM-DD>_<Name>/<arm>, "
            "beside arms.tsv) or a record's previous/",
        ),
    ],
)
def test_forks_cli_names_a_folder_that_is_no_fork(frozen, monkeypatch, folder, line):
    monkeypatch.chdir(frozen)
    assert forks(folder, BASE) == (2, "", f"error: {line}\n")


@pytest.mark.parametrize(
    "base, line",
    [
        (
            f"{EXP}/fork",
            f"{EXP}/fork: the base {EXP}/fork is the folder itself: a fork.diff starts "
            "from a record's train_gpt.py or another arm folder",
        ),
        (
            f"{EXP}/fork_b",
            f"{EXP}/fork: the base {EXP}/fork_b is rebuilt from the folder (a "
            "cycle): a fork.diff starts from a record's train_gpt.py or another arm folder",
        ),
        (
            "fork.py",
            "BASE fork.py is not a frozen script: a fork's base is a record's train_gpt.py "
            "(records/<track>/<YYYY-MM-DD>_<Name>/train_gpt.py) or an arm folder",
        ),
        (
            "train_gpt.py",
            "BASE train_gpt.py is not a frozen script (the root train_gpt.py changes "
            "with every record): a fork's base is a record's train_gpt.py "
            "(records/<track>/<YYYY-MM-DD>_<Name>/train_gpt.py) or an arm folder",
        ),
    ],
)
def test_forks_cli_refuses_a_base_that_is_the_folder_derives_from_it_or_is_not_frozen(
    frozen, tmp_path, monkeypatch, base, line
):
    """forks.py FOLDER FOLDER deleted a tracked fork.diff; a base rebuilt from the folder wrote a
    cyclic diff; the root script as base would move with every record."""
    root = copy_of(frozen, tmp_path)
    shutil.copyfile(FAKE, root / "train_gpt.py")
    monkeypatch.chdir(root)
    diff = root / EXP / "fork" / forkdiff.DIFF
    good = diff.read_bytes()
    assert forks(f"{EXP}/fork", base) == (2, "", f"error: {line}\n")
    assert diff.read_bytes() == good and checked(root)[0] == 0


def test_forks_cli_refuses_a_diff_for_a_previous_that_embeds_a_record_script(tmp_path, monkeypatch):
    """forks.py <record>/previous <that record's script> wrote a diff that made a valid record
    fail: previous/'s logs embed the record before it, unchanged, and take no diff."""
    shutil.copytree(REPO / "records", tmp_path / "records")
    monkeypatch.chdir(tmp_path)
    rec = "records/cpu_shakespeare/2026-12-03_TwoLayers"
    before = layout.find_records(str(tmp_path / "records"))
    logged = forkdiff.logged_source(f"{rec}/previous")
    [same] = [
        s for s in layout.frozen_scripts(str(tmp_path)) if (tmp_path / s).read_text() == logged
    ]
    code, out, err = forks(f"{rec}/previous", f"{rec}/train_gpt.py")
    assert (code, out) == (2, "") and err == (
        f"error: {rec}/previous: its logs embed {same} unchanged, so it takes no fork.diff "
        f"(python tools/forks.py {rec}/previous {same} removes one)\n"
    )
    assert not (tmp_path / rec / "previous" / "fork.diff").exists()
    assert layout.find_records(str(tmp_path / "records")) == before


def test_forks_cli_takes_back_a_diff_that_would_make_another_folder_fail(frozen, tmp_path):
    """An experiment ran EXP/fork while its fork.diff rebuilt another source than its logs; putting
    the diff right would make that experiment fail (its arm no longer stands for its logs): the
    diff is taken back, named, nothing changed."""
    root = copy_of(frozen, tmp_path)
    diff = root / EXP / "fork" / forkdiff.DIFF
    diff.write_text(diff.read_text().replace("# the fork", "# another fork"))
    edited = diff.read_bytes()
    again = "experiments/2025-01-02_Again"
    p = subprocess.run(
        [sys.executable, str(REPO / "tools" / "compare.py"), "-n", "1", "--out", "out"]
        + ["--arm", f"again={EXP}/fork", "--freeze", again],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and "warning: --arm again: " in p.stderr, p.stdout + p.stderr
    fill_in(root / again / "README.md")
    assert checked(root, folder=again) == (1, f"{again}  OK")  # EXP fails: its diff was edited
    code, out, err = forks_in(root, f"{EXP}/fork", BASE)
    assert (code, out) == (2, "") and err == (
        f"error: fork.diff from {BASE} not written: {again} would then fail the check: arms.tsv: "
        f"again: {EXP}/fork is not the source its logs embed (name the script they ran, or the "
        f"arm's folder with a fork.diff from it)\n"
    )
    assert diff.read_bytes() == edited and not list((root / EXP / "fork").glob("*.tmp*"))


def forks_in(root, *argv):
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return forks(*argv)
    finally:
        os.chdir(cwd)


def test_a_diff_is_written_whole_or_not_at_all(frozen, tmp_path, monkeypatch):
    root = copy_of(frozen, tmp_path)
    diff = root / EXP / "fork" / forkdiff.DIFF
    good = diff.read_bytes()
    diff.write_text("garbage\n")

    def full(src, dst):
        raise OSError(28, "No space left on device", dst)

    monkeypatch.setattr(layout.os, "replace", full)
    code, out, err = forks_in(root, f"{EXP}/fork", BASE)
    assert (code, out) == (2, "") and err == (
        f"error: {EXP}/fork/fork.diff: No space left on device (make the folder writable and "
        f"rerun)\n"
    )
    assert diff.read_bytes() == b"garbage\n" and sorted(os.listdir(diff.parent)) == sorted(
        [forkdiff.DIFF] + [p.name for p in (frozen / EXP / "fork").glob("*.txt")]
    )
    monkeypatch.undo()
    assert forks_in(root, f"{EXP}/fork", BASE)[0] == 0 and diff.read_bytes() == good
