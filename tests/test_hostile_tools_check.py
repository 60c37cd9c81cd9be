"""Issue 29 (hostile inputs, round 3), tools/check.py and the checker behind it: symlinked logs,
line endings pinned by .gitattributes, a README that still holds the stub's TODO, arms.tsv names,
--extract, --write-manifest, --target and --rerun --workdir taking exactly what they say, and
every filesystem error one line. check.main runs in-process; the records are a copy of the
repository's own (5 MB), so nothing here writes into the repository."""

import io
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

import check
import layout
from logformat import split_log

REPO = Path(__file__).resolve().parent.parent
RECORD = "records/cpu_shakespeare/2026-12-03_TwoLayers"
EXPERIMENT = "experiments/2026-12-03_HeadDivValue"


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """records/ and one experiment of the repository, copied."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "records", root / "records")
    shutil.copytree(REPO / EXPERIMENT, root / EXPERIMENT)
    return root


@pytest.fixture
def root(repo_copy, tmp_path, monkeypatch):
    """A fresh copy of repo_copy, the working directory of the test."""
    shutil.copytree(repo_copy, tmp_path / "repo", symlinks=True)
    monkeypatch.chdir(tmp_path / "repo")
    return tmp_path / "repo"


def run(*argv):
    """check.main in-process: (exit code, stdout lines, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = check.main(list(argv))
    return code, out.getvalue().splitlines(), err.getvalue()


def line_of(lines, folder):
    [line] = [s for s in lines if s.startswith(f"{folder}  ")]
    return line


def test_the_copied_records_and_experiment_pass(root):
    code, lines, _ = run("--records", "records")
    assert line_of(lines, "cpu_shakespeare/2026-12-03_TwoLayers").endswith(")")
    assert line_of(lines, EXPERIMENT) == f"{EXPERIMENT}  OK"
    assert all(" OK" in s for s in lines if s.startswith("cpu_shakespeare/")), lines


# 5. Symlinked logs are refused, one reason naming each.


@pytest.mark.parametrize("dangling", [False, True])
def test_a_record_log_replaced_by_a_symlink_fails_in_one_reason(root, dangling):
    log = sorted(Path(RECORD).glob("*.txt"))[0]
    target = root / "elsewhere.txt"
    shutil.move(log, target)
    if dangling:
        target.unlink()
    log.symlink_to(target)
    code, lines, err = run("--records", "records")
    assert code == 1 and err == ""
    assert line_of(lines, "cpu_shakespeare/2026-12-03_TwoLayers").split("FAIL: ")[1] == (
        f"{log.name}: a symbolic link, not a log (a clone would hold the link, not the run: put "
        f"the log file it names in its place, or delete it)"
    )


def test_an_arm_log_replaced_by_a_symlink_fails_and_is_kept_out_of_a_manifest(root):
    arm = Path(EXPERIMENT) / "div2"
    log = sorted(arm.glob("*.txt"))[0]
    shutil.move(log, root / "elsewhere.txt")
    log.symlink_to(root / "elsewhere.txt")
    code, lines, _ = run("--records", "records")
    assert (
        line_of(lines, EXPERIMENT)
        .split("FAIL: ")[1]
        .startswith(f"div2/{log.name}: a symbolic link, not a log (")
    )
    manifest = (Path(EXPERIMENT) / "MANIFEST.sha256").read_bytes()
    code, lines, err = run("--write-manifest", EXPERIMENT)
    assert (code, lines) == (2, []) and err == (
        f"error: --write-manifest {EXPERIMENT}: div2/{log.name} is a symbolic link, not a log (put "
        f"the file it names in its place); nothing written\n"
    )
    assert (Path(EXPERIMENT) / "MANIFEST.sha256").read_bytes() == manifest


# 5. A README that still holds the stub's TODO fails (tests/test_compare.py shows it on a fresh
# freeze); arms.tsv names are what compare.py accepts, each line once.


def test_a_readme_that_still_holds_a_todo_fails(root):
    readme = Path(EXPERIMENT) / "README.md"
    readme.write_text(readme.read_text().replace("## Results", "TODO\n\n## Results", 1))
    k = readme.read_text().splitlines().index("TODO") + 1
    code, lines, _ = run("--records", "records")
    assert line_of(lines, EXPERIMENT) == (
        f"{EXPERIMENT}  FAIL: README.md still holds the stub's TODO (line {k}): fill in what was "
        f"changed and why, and its Summary row"
    )


@pytest.mark.parametrize(
    "edit, why",
    [
        (
            "duplicate",
            "line 4: arm div8 again (first on line 3): one line per arm, its name its folder's",
        ),
        (
            "slash",
            "line 1: arm name 'div/4' holds '/' (an arm's name is its folder's: letters, "
            "digits and _ . - + = ,)",
        ),
    ],
)
def test_a_bad_or_repeated_arms_tsv_name_is_named_not_a_table_mismatch(root, edit, why):
    tsv = Path(EXPERIMENT) / "arms.tsv"
    lines = tsv.read_text().splitlines(keepends=True)
    assert [line.split("\t")[0] for line in lines] == ["div4", "div2", "div8"]
    if edit == "duplicate":
        lines.append(lines[2])
    else:
        lines[0] = lines[0].replace("div4\t", "div/4\t")
    tsv.write_text("".join(lines))
    code, out, _ = run("--records", "records")
    assert line_of(out, EXPERIMENT) == f"{EXPERIMENT}  FAIL: {root / tsv}: {why}"


def test_a_flag_the_script_lacks_is_blamed_on_arms_tsv_not_on_a_moved_log(root):
    tsv = Path(EXPERIMENT) / "arms.tsv"
    tsv.write_text(tsv.read_text().replace("\n", " --foo=1\n", 1))
    code, out, _ = run("--records", "records")
    reasons = line_of(out, EXPERIMENT).split("FAIL: ")[1].split("; ")
    assert len(reasons) == 3 and {r.split(": ", 1)[1] for r in reasons} == {
        "arms.tsv says --foo=1, but its script has no hyperparameter foo (its log holds none, "
        "and the script refuses unknown flags): fix the arms.tsv line"
    }


# 5. --extract and --write-manifest take exactly what their docstrings say.


@pytest.mark.parametrize(
    "path, line",
    [
        ("", "--extract '': empty; PATH is {}"),
        ("experiments", "--extract experiments: a folder, but not {}"),
        ("records", "--extract records: a folder, but not {}"),
        ("nonexistent.txt", "--extract nonexistent.txt: No such file or directory (PATH is {})"),
    ],
)
def test_extract_refuses_what_is_no_log_arm_or_record_in_one_line(root, path, line):
    assert run("--extract", path) == (2, [], f"error: {line.format(check.EXTRACTS)}\n")


def extracted(path, capfd):
    assert check.main(["--extract", path]) == 0
    return capfd.readouterr().out


def test_extract_of_a_record_folder_and_of_a_previous_without_diff(root, capfd):
    assert extracted(RECORD, capfd) == (root / RECORD / "train_gpt.py").read_text()
    log = sorted((root / RECORD / "previous").glob("*.txt"))[0]
    assert extracted(f"{RECORD}/previous", capfd) == split_log(log.read_text())[0]
    assert (
        extracted(f"{EXPERIMENT}/div2", capfd)
        == split_log(sorted((root / EXPERIMENT / "div2").glob("*.txt"))[0].read_text())[0]
    )


@pytest.mark.parametrize(
    "folders, what",
    [
        (["records"], "records: a folder"),
        (["records/cpu_shakespeare"], "records/cpu_shakespeare: a folder"),
        ([f"{EXPERIMENT}/div2"], f"{EXPERIMENT}/div2: an arm folder"),
        ([f"{RECORD}/previous"], f"{RECORD}/previous: a record's previous/"),
        (["nonexistent"], "nonexistent: no such folder"),
        ([""], "'': no such folder"),
        ([EXPERIMENT, "records"], "records: a folder"),  # nothing written for the first either
    ],
)
def test_write_manifest_takes_record_and_experiment_folders_only(root, folders, what):
    before = {p: p.read_bytes() for p in root.rglob("MANIFEST.sha256")}
    (root / EXPERIMENT / "MANIFEST.sha256").write_text("stale\n")
    before[root / EXPERIMENT / "MANIFEST.sha256"] = b"stale\n"
    code, out, err = run("--write-manifest", *folders)
    assert (code, out) == (2, []) and err == (
        f"error: --write-manifest {what}, not a record folder "
        f"(records/<track>/<YYYY-MM-DD>_<Name>, holding train_gpt.py) or an experiment folder "
        f"(holding arms.tsv); nothing written\n"
    )
    assert {p: p.read_bytes() for p in root.rglob("MANIFEST.sha256")} == before


def test_write_manifest_of_a_record_and_an_experiment(root):
    code, out, err = run("--write-manifest", RECORD, EXPERIMENT)
    assert code == 0 and out == [
        f"wrote {RECORD}/MANIFEST.sha256",
        f"wrote {EXPERIMENT}/MANIFEST.sha256",
    ]
    assert (root / RECORD / "MANIFEST.sha256").read_bytes() == (
        REPO / RECORD / "MANIFEST.sha256"
    ).read_bytes()


# Partials: --target names the flag; --rerun --workdir is checked before the run.


@pytest.mark.parametrize(
    "target, why",
    [
        ("cpu_shakespeare=abc", "VALUE 'abc' is not a number (a val loss, or none to unset)"),
        ("cpu_shakespeare=nan", "VALUE 'nan' is not a finite val loss"),
        ("cpu_shakespeare", "expected TRACK=VALUE"),
    ],
)
def test_a_bad_target_names_the_flag_in_one_line(root, target, why):
    assert run("--target", target) == (2, [], f"error: --target {target!r}: {why}\n")


def test_rerun_workdir_is_checked_before_the_run(root):
    code, out, err = run("--rerun", RECORD, "--workdir", "/nonexistent")
    assert (code, out) == (2, []) and err == (
        "error: --workdir /nonexistent: no such folder (where the rerun runs: its data paths are "
        "relative to it; default the repository)\n"
    )
    Path("afile").write_text("x\n")
    code, out, err = run("--rerun", RECORD, "--workdir", "afile")
    assert (code, out) == (2, []) and err.startswith("error: --workdir afile: no such folder")
    Path("wd").mkdir()
    Path("wd/logs").write_text("a file where the logs folder belongs\n")
    code, out, err = run("--rerun", RECORD, "--workdir", "wd")
    assert (code, out) == (2, []) and err == (
        f"error: --workdir wd: {root / 'wd' / 'logs'}: a file where a folder belongs (the rerun "
        f"writes its log in WORKDIR/logs/: make it writable)\n"
    )


def test_table_into_an_unwritable_readme_is_one_line(root, monkeypatch):
    (root / "README.md").write_text("<!-- records:begin -->\n<!-- records:end -->\n")

    def full(src, dst):
        raise OSError(28, "No space left on device", dst)

    monkeypatch.setattr(layout.os, "replace", full)
    code, out, err = run("--records", "records", "--table")
    assert code == 2 and err == (
        f"error: {root / 'README.md'}: No space left on device (make it and its folder writable, "
        f"then rerun --table)\n"
    )
    assert (root / "README.md").read_text() == "<!-- records:begin -->\n<!-- records:end -->\n"
    assert not list(root.glob(".README.md.tmp*"))


# 5. .gitattributes pins the line endings: a core.autocrlf=true clone checks out the bytes git
# holds.


def git(*args, cwd):
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_gitattributes_leaves_every_log_script_and_diff_unconverted():
    """Every tracked file under records/ and experiments/ is -text (never converted), every other
    text file eol=lf, whatever core.autocrlf says."""
    files = git("ls-files", "-z", cwd=REPO).split("\0")[:-1]
    attrs = git("check-attr", "-z", "text", "eol", "--", *files, cwd=REPO).split("\0")[:-1]
    got = {}
    for path, attr, value in zip(attrs[::3], attrs[1::3], attrs[2::3]):
        got.setdefault(path, {})[attr] = value
    frozen = [f for f in files if f.startswith(("records/", "experiments/"))]
    assert len(frozen) > 300
    assert all(got[f]["text"] == "unset" for f in frozen), [f for f in frozen if got[f]["text"]]
    others = [f for f in files if f not in frozen]
    assert all(got[f] == {"text": "auto", "eol": "lf"} for f in others)


def test_a_crlf_clone_checks_out_what_git_holds(tmp_path):
    """A real `git -c core.autocrlf=true clone` of a small repository with this .gitattributes:
    its log, script, diff and README come out byte for byte, LF, and the source still CRLF where
    it was committed so."""
    src = tmp_path / "src"
    files = {
        "records/t/2025-01-01_A/x.txt": b"log line\nsource\r\nline\n",
        "records/t/2025-01-01_A/train_gpt.py": b"print(1)\n",
        "experiments/2025-01-01_E/a/fork.diff": b"--- a\n+++ b\n",
        "experiments/2025-01-01_E/arms.tsv": b"a\tx.py\n",
        "train_gpt.py": b"print(2)\n",
        "README.md": b"# R\n",
    }
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    shutil.copyfile(REPO / ".gitattributes", src / ".gitattributes")
    git("init", "-q", cwd=src)
    git("add", ".", cwd=src)
    git("commit", "-qm", "files", cwd=src)
    git("-c", "core.autocrlf=true", "clone", "-q", str(src), str(tmp_path / "clone"), cwd=tmp_path)
    for name, data in files.items():
        assert (tmp_path / "clone" / name).read_bytes() == data, name
    assert git("status", "--porcelain", cwd=tmp_path / "clone") == ""
