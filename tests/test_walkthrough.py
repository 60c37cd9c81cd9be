"""README's "Trying an idea" walkthrough, run as README writes it, so that it cannot rot: its bash
blocks, taken from README.md, run in order in one shell, in a temporary copy of the repository
(tools/ and the READMEs copied, the records linked, a fresh experiments/), with the steps shortened
(one run per arm of 4 steps, no compile, a small val set). Each step must succeed and leave what
README says: the fork's scratch copy, a frozen experiment folder with a fork.diff, check OK, the
fork read back byte for byte. The flags the section names must exist, too."""

import ast
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SECTION = "## Trying an idea"
RECORD = "records/cpu_shakespeare/2026-12-05_EmbedRowsHead1024/train_gpt.py"
TRACK = "--track=cpu_shakespeare"
# The shortening: appended to every arm's flags. 4 steps, eager, 8,192 val tokens, and a given peak
# (no matmul benchmark): a few seconds a run.
TINY = "--num_iterations=4 --compile=false --val_tokens=8192 --peak_flops=1e12"


def section(text, heading):
    """The text of a README section: from its heading to the next heading of the same level."""
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def bash_blocks(text):
    """The fenced ```bash blocks of text, dedented (they may sit in a list item)."""
    return [
        textwrap.dedent(m[1]) for m in re.finditer(r"^ *```bash\n(.*?)^ *```$", text, re.S | re.M)
    ]


def shortened(block):
    """A block with its compare runs made tiny; fails if the block no longer reads as expected."""
    if "tools/compare.py" in block:
        assert " -n 3 " in block, "the walkthrough's compare command lost its '-n 3'"
        assert block.count(f'{TRACK}"') >= 2, f"each arm should end in {TRACK}"
        block = block.replace(" -n 3 ", " -n 1 ").replace(f'{TRACK}"', f'{TRACK} {TINY}"')
    if "tools/check.py --table" in block:  # step 3 begins: "Fill in the folder's README"
        block = f"sed -i 's/TODO[^|]*/filled in/g' $exp/README.md\n{block}"
    return block


def hyperparameters(script):
    """The field names of a script's Hyperparameters dataclass, read without running it."""
    tree = ast.parse(script.read_text())
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Hyperparameters"]
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_the_flags_the_walkthrough_names_exist():
    text = section((REPO / "README.md").read_text(), SECTION)
    fields = hyperparameters(REPO / RECORD)
    tools = "".join((REPO / "tools" / f).read_text() for f in ("compare.py", "check.py"))
    named = set(re.findall(r"(?<![\w-])--([a-z][a-z_]*)(=?)", text))
    assert {"num_iterations", "muon_lr", "track"} <= {name for name, eq in named if eq}
    for name, eq in named:
        if eq and name != "name":  # --name=value: the placeholder
            assert name in fields, f"README's walkthrough names --{name}=, not a field of {RECORD}"
        elif not eq:
            assert f'"--{name}"' in tools, f"README's walkthrough names --{name}, no tool option"


def repo_copy(root):
    """A copy of the repository to run the walkthrough in: what it writes lands here only."""
    root.mkdir()
    shutil.copyfile(REPO / "README.md", root / "README.md")
    shutil.copytree(REPO / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "records").mkdir()
    for entry in (REPO / "records").iterdir():  # tracks as folders (a plot lands in the copy) ...
        if entry.is_dir():
            (root / "records" / entry.name).mkdir()
            for item in entry.iterdir():  # ... whose records are links: read, never written
                (root / "records" / entry.name / item.name).symlink_to(item)
        else:
            shutil.copyfile(entry, root / "records" / entry.name)
    (root / "experiments").mkdir()
    shutil.copyfile(REPO / "experiments" / "README.md", root / "experiments" / "README.md")
    (root / "data").mkdir()
    (root / "data" / "shakespeare").symlink_to(REPO / "data" / "shakespeare")
    return root


def test_walkthrough_runs_as_written(tmp_path):
    if not list((REPO / "data" / "shakespeare").glob("shakespeare_val_*.bin")):
        pytest.skip("no CPU-track shards: python data/shakespeare.py builds them (./test.sh does)")
    blocks = bash_blocks(section((REPO / "README.md").read_text(), SECTION))
    assert len(blocks) == 3, "copy and edit; compare and freeze; check and read back"
    root = repo_copy(tmp_path / "repo")
    script = "".join(f"echo '== step {k}'\n{shortened(b)}" for k, b in enumerate(blocks, 1))
    bindir = str(Path(sys.executable).parent)  # `python` in the blocks is this interpreter
    p = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f'PATH="{bindir}:$PATH"\n{script}'],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, (
        f"README's walkthrough failed:\n{script}\n{p.stdout[-3000:]}{p.stderr}"
    )

    # Step 1: the scratch copy is the record's script with one change.
    fork, record = (root / "logs" / "ns4.py").read_text(), (REPO / RECORD).read_text()
    assert fork != record and len(fork.splitlines()) == len(record.splitlines())
    # Step 2: the frozen folder; the fork as a diff against the record's script, named in arms.tsv.
    [exp] = (root / "experiments").glob("*_NewtonSchulz4")
    name = f"experiments/{exp.name}"
    assert (exp / "arms.tsv").read_text() == (
        f"record\t{RECORD} {TRACK} {TINY}\nns4\t{name}/ns4 {TRACK} {TINY}\n"
    )
    diff = (exp / "ns4" / "fork.diff").read_text()
    assert diff.startswith(f"--- {RECORD}\n+++ {name}/ns4\n")
    assert "+def zeropower_via_newtonschulz5(G, steps=4," in diff
    assert not (exp / "record" / "fork.diff").exists()
    for arm in ("record", "ns4"):
        assert len(list((exp / arm).glob("*.txt"))) == 1
    for kept in ("MANIFEST.sha256", "README.md", "compare.png"):
        assert (exp / kept).is_file()
    # Step 3: the check passed, the folder's Summary row is in the ideas table, the fork reads back.
    assert f"{name}  OK" in p.stdout and "experiments/README.md  OK" in p.stdout
    assert f"[{exp.name}]({exp.name})" in (root / "experiments" / "README.md").read_text()
    assert (root / "logs" / "ns4_again.py").read_text() == fork
