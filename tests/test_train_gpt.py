"""Tests of train_gpt.py on CPU: tiny models trained for a few steps on shards made here."""

import dataclasses
import gc
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_gpt.py")
import logformat  # noqa: E402
import shards  # noqa: E402
import train_gpt  # noqa: E402

STEP_RE = logformat.STEP_RE  # the one definition of the step-line format
TINY = [
    "--track=cpu_shakespeare",
    "--train_files=train_*.bin",
    "--val_files=val_*.bin",
    "--num_layers=2",
    "--model_dim=64",
    "--num_heads=2",
    "--seq_len=64",
    "--device_batch_size=256",
    "--batch_size=512",
    "--val_tokens=2000",
    "--peak_flops=1e11",
    "--seed=1",
    "--vocab_size=1024",
    "--head_cutoffs=64,256",
    "--bos_id=999",
    "--compile=false",  # the tiny streams use ids < 1000
    "--dtype=float32",
]  # the preset's bf16 would blur the equalities these runs check; bf16 has its own unit tests


def run(workdir, *args, nproc=1, check=True):
    if nproc == 1:
        cmd = [sys.executable, SCRIPT]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            SCRIPT,
        ]
    p = subprocess.run(
        cmd + TINY + list(args), cwd=workdir, capture_output=True, text=True, timeout=300
    )
    if check:
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p


def newest_log(workdir):
    logs = sorted((workdir / "logs").glob("*.txt"), key=os.path.getmtime)
    return logs[-1].read_text()


def run_id(log):
    body = log.split("=" * 100 + "\n")[2]  # after the embedded source, which has this pattern too
    return re.search(r"^log: logs/(\S+)\.txt$", body, re.M).group(1)


def step_lines(log):
    """{(step, kind): value} for every step line, kind 'train' or 'val'."""
    out = {}
    for line in log.splitlines():
        m = STEP_RE.fullmatch(line)
        if m:
            step = int(m.group(1))
            out[(step, "val")] = float(m.group(3)) if m.group(3) else out.get((step, "val"))
            if m.group(4):
                out[(step, "train")] = float(m.group(4))
                out[(step, "grad_norm")] = float(m.group(6))
    return {k: v for k, v in out.items() if v is not None}


def test_tiny_run_learns_and_logs(workdir):
    p = run(workdir, "--num_iterations=30", "--val_loss_every=10")
    log = newest_log(workdir)
    ruler = "=" * 100 + "\n"
    assert log.split(ruler)[1] == open(SCRIPT).read(), "the log must embed the exact source"
    lines = [line for line in log.split(ruler)[3].splitlines() if line.startswith("step:")]
    assert lines and all(STEP_RE.fullmatch(line) for line in lines), (
        "every step line parses with one regex"
    )
    steps = step_lines(log)
    assert [s for s, kind in steps if kind == "val"] == [10, 20, 30]
    assert steps[(30, "val")] < steps[(10, "val")] - 0.5 and steps[(30, "val")] < 5.0, (
        "val loss must fall"
    )
    assert steps[(30, "train")] < steps[(1, "train")] - 2.0
    assert f"final_val_loss:{steps[(30, 'val')]:.4f}" in log
    assert re.search(r"tokens_per_s:\d+ mfu:[\d.]+%", log)
    assert p.stdout.count("step:") == len(lines), "stdout shows what the log shows"


def test_any_world_size_equals_one_rank_with_accumulation(workdir):
    """Same global batch of 8 rows, split 4+4 over 2 micro-steps on 1 rank, 4|4 over 2 gloo ranks,
    or 2|3|3 over 3 ranks (unequal shares, weighted by their token counts): the same tokens, the
    same math, only the order of float sums differs (~1e-7 relative), so logged 4-decimal losses
    and grad norms agree to within one unit in the last place. Adam's lrs are lowered: at the
    track's lrs its first steps move every weight by about +-lr whatever the gradient's size, so a
    rounding-level gradient that flips sign moves a weight by 2 * 0.6, and 3 ranks then drift by
    2-13e-4 by step 5."""
    args = [
        "--num_iterations=6",
        "--val_loss_every=3",
        "--embed_lr=0.006",
        "--head_lr=0.0001",
        "--scalar_lr=0.0004",
    ]
    run(workdir, *args)
    one_rank = step_lines(newest_log(workdir))
    assert "world_size:1 grad_accum_steps:2 " in newest_log(workdir)
    assert len(one_rank) == 2 * 6 + 2
    for nproc in (2, 3):
        run(workdir, *args, nproc=nproc)
        log = newest_log(workdir)
        assert f"world_size:{nproc} grad_accum_steps:1 " in log
        many_ranks = step_lines(log)
        assert many_ranks.keys() == one_rank.keys()
        for key in one_rank:
            assert abs(many_ranks[key] - one_rank[key]) <= 1.5e-4, (nproc, key)


def test_too_small_batch_for_the_world_size_is_refused():
    h = train_gpt.parse_args(TINY + ["--batch_size=128"])  # 2 rows of 64 for 3 ranks
    with pytest.raises(SystemExit) as stop:
        train_gpt.split_batch(h, 3)
    assert str(stop.value.code) == (
        "train_gpt.py: 2 rows per step cannot fill 3 ranks x 1 micro-steps; "
        "raise batch_size or lower seq_len"
    )


# rectangular Gaussian matrices are well conditioned; a square one has singular values near 0,
# which 5 steps cannot lift (by design: the iteration trades exactness for speed)
@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (96, 384)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newton_schulz_singular_values(shape, dtype):
    torch.manual_seed(0)
    G = torch.randn(shape)
    X = train_gpt.zeropower_via_newtonschulz5(G, dtype=dtype)
    assert X.shape == G.shape and X.dtype == dtype
    s = torch.linalg.svdvals(X.float())
    assert s.min() > 0.6 and s.max() < 1.25, (s.min(), s.max())
    # the same singular vectors as G: X is close to the orthogonal factor U V^T
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    cos = (X.float() * (U @ Vh)).sum() / (X.float().norm() * (U @ Vh).norm())
    assert cos > 0.95


def _muon_params(seed):
    """Matrices of two shapes, counts not divisible by 2 ranks, so padding is exercised."""
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(16, 32, generator=g)) for _ in range(3)]
    params += [torch.nn.Parameter(torch.randn(48, 16, generator=g)) for _ in range(5)]
    return params


def _muon_steps(params, rank, world_size, steps=3):
    opt = train_gpt.Muon(
        params, lr=0.02, momentum=0.95, ns_dtype=torch.float32, rank=rank, world_size=world_size
    )
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return [p.detach().clone() for p in params]


def _distributed_muon_worker(rank, world_size, init_file, out_file):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    result = _muon_steps(_muon_params(0), rank, world_size)
    if rank == 0:
        torch.save(result, out_file)
    # As in train_gpt.py: everything holding gloo work must be gone before the group is, or gloo's
    # threads can abort the process at exit ("terminate called without an active exception").
    del result
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def test_distributed_muon_equals_single_process(tmp_path):
    torch.multiprocessing.spawn(
        _distributed_muon_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path / "out.pt")),
        nprocs=2,
    )
    distributed = torch.load(tmp_path / "out.pt")
    single = _muon_steps(_muon_params(0), 0, 1)
    for a, b in zip(distributed, single):
        assert torch.equal(a, b), (
            "each matrix gets the same Newton-Schulz work, just on another rank"
        )
    assert not torch.equal(single[0], _muon_params(0)[0]), "the parameters moved"


def one_line_error(p):
    assert p.returncode != 0
    err = p.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def main_stops(cwd, monkeypatch, capsys, *args):
    """main() in-process (a subprocess spends ~6 s importing torch here): the one line it stops
    with, before any step. A string given to sys.exit is what the process prints, alone, on stderr
    (the next test runs one)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [SCRIPT, *TINY, *args])
    with pytest.raises(SystemExit) as stop:
        train_gpt.main()
    message = str(stop.value.code)
    assert message.startswith("train_gpt.py: ") and "\n" not in message, message
    assert "step:" not in capsys.readouterr().out
    return message


def test_missing_files_give_one_line_error(
    workdir,
):  # a subprocess: the process's stderr is one line, no traceback
    err = one_line_error(run(workdir, "--train_files=nothing/shakespeare_train_*.bin", check=False))
    assert "nothing/shakespeare_train_*.bin" in err
    # run from another folder than the repository's: the command says where it runs
    assert f"cd {ROOT} && python data/shakespeare.py, then run from there" in err


@pytest.mark.parametrize("corruption", ["magic", "truncated", "version"])
def test_bad_shard_gives_one_line_error(workdir, tmp_path, monkeypatch, capsys, corruption):
    raw = bytearray((workdir / "train_000000.bin").read_bytes())
    if corruption == "magic":
        raw[0:4] = np.int32(1234).tobytes()
    elif corruption == "version":
        raw[4:8] = np.int32(7).tobytes()
    else:
        raw = raw[:-100]
    bad = tmp_path / "fineweb_train_000001.bin"
    bad.write_bytes(bytes(raw))
    err = main_stops(workdir, monkeypatch, capsys, f"--train_files={bad}")
    assert str(bad) in err and "python data/cached_fineweb10B.py" in err


def test_unknown_override_lists_valid_names():
    for arg, expected in (
        ("--num_iteration=5", ["--num_iteration", "num_iterations", "val_loss_every"]),
        ("--num_iterations=five", ["wants a int"]),
    ):
        with pytest.raises(SystemExit) as stop:  # in-process, as above
            train_gpt.parse_args([arg])
        err = str(stop.value.code)
        assert all(e in err for e in expected) and "\n" not in err, err


def test_non_finite_loss_stops_the_run(workdir, monkeypatch):
    monkeypatch.chdir(workdir)  # in-process, as main_stops
    monkeypatch.setattr(
        sys, "argv", [SCRIPT, *TINY, "--num_iterations=20", "--scalar_lr=1e30"]
    )  # inf weights after one step
    with pytest.raises(SystemExit) as stop:
        train_gpt.main()
    assert stop.value.code == 1
    assert (
        newest_log(workdir).splitlines()[-1].startswith("stopped: non-finite train loss at step ")
    )


def test_ctrl_c_keeps_the_log(workdir):
    proc = subprocess.Popen(
        [sys.executable, SCRIPT] + TINY + ["--num_iterations=100000"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell that started us in the background ignores SIGINT, and the child
        # would inherit that; a user's Ctrl-C reaches a foreground process
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in proc.stdout:
            if line.startswith("step:2/"):
                break
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    log = newest_log(workdir)
    assert "step:2/100000 train_loss" in log and "interrupted after step" in log.splitlines()[-1]


def test_adaptive_softmax_is_an_exact_distribution():
    """With cutoffs, the head still gives a normalized distribution over every id, and the loss is
    -log p(target) under it; with none, it is the plain full softmax (F.cross_entropy)."""
    torch.manual_seed(0)
    x, targets = torch.randn(40, 64), torch.randint(0, 300, (40,))
    counts = np.random.default_rng(0).integers(0, 1000, 300)
    head = train_gpt.AdaptiveSoftmax(
        SimpleNamespace(model_dim=64, vocab_size=300, head_cutoffs="20,100", logit_softcap=0.0)
    )
    head.rank_by(counts)
    for p in head.parameters():  # zero-init would make every band uniform: a weak test
        torch.nn.init.normal_(p, std=0.3)
    x, targets = x[:4], targets[:4]
    with torch.no_grad():  # log p of every id, one id at a time: the loss of that single target
        logp = torch.tensor(
            [[-head(row[None], torch.tensor([i])).item() for i in range(300)] for row in x]
        )
    torch.testing.assert_close(
        logp.exp().sum(1), torch.ones(4), atol=1e-5, rtol=0
    )  # fp32 sums of 300
    torch.testing.assert_close(
        head(x, targets), -logp.gather(1, targets[:, None]).sum(), atol=1e-4, rtol=0
    )
    assert set(head.rank_of.tolist()) == set(range(300))
    assert head.rank_of[int(np.argmax(counts))] == 0, "the most frequent id gets rank 0"
    assert abs(sum(head.band_shares) - counts[np.argsort(-counts)[20:]].sum() / counts.sum()) < 1e-9

    full = train_gpt.AdaptiveSoftmax(
        SimpleNamespace(model_dim=64, vocab_size=300, head_cutoffs="", logit_softcap=15.0)
    )
    torch.nn.init.normal_(full.head.weight, std=0.3)
    logits = 15.0 * torch.tanh(x @ full.head.weight.T / 15.0)
    torch.testing.assert_close(
        full(x, targets), F.cross_entropy(logits, targets, reduction="sum"), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize(
    "arg, valid",
    [
        ("--seq_len=0", "valid: >= 1"),
        ("--num_iterations=-5", "valid: >= 1"),
        ("--threads=-1", "valid: >= 0"),
        ("--num_heads=3", "divides model_dim=64"),
        ("--val_tokens=-7", "valid: >= 0"),
        ("--num_value_embeds=2", "0 <= 2 x num_value_embeds <= num_layers=2"),
        ("--batch_size=100", "multiple of seq_len"),
        ("--head_cutoffs=500,100", "increasing ranks"),
        ("--dtype=fp8", "float32 or bfloat16"),
        ("--cooldown_frac=2.5", "in [0, 1]"),
        ("--seed=4294967296", "in [0, 2^32)"),  # torch takes 64 bits; the checker counts 32
    ],
)
def test_out_of_range_hyperparameters_give_one_line(arg, valid):
    with pytest.raises(
        SystemExit
    ) as stop:  # in-process: importing torch in a subprocess takes ~8 s here
        train_gpt.parse_args(TINY + [arg])
    err = str(stop.value.code)
    assert (
        err.startswith(f"train_gpt.py: {arg} is out of range; valid: ")
        and valid in err
        and "\n" not in err
    ), err


@pytest.mark.parametrize("val_size", [0, 1])
def test_val_set_too_small_is_refused_before_training(
    workdir, tmp_path, monkeypatch, capsys, val_size
):
    shards.write_shard(tmp_path / "val_000000.bin", np.full(val_size, 999))
    err = main_stops(
        workdir, monkeypatch, capsys, f"--val_files={tmp_path}/val_*.bin", "--val_tokens=0"
    )
    assert (
        f"holds {val_size} tokens; a prediction needs 2" in err and "python data/fineweb.py" in err
    )


def test_glob_matching_a_directory_is_not_a_shard(workdir, tmp_path, monkeypatch, capsys):
    (tmp_path / "train_dir.bin").mkdir()
    err = main_stops(workdir, monkeypatch, capsys, f"--train_files={tmp_path}/train_*.bin")
    assert f"no files match {tmp_path}/train_*.bin" in err


def test_ctrl_c_during_evaluation_does_not_count_it_as_training(workdir, tmp_path):
    big_val = np.tile(
        np.arange(1000), 3000
    )  # 3M tokens: many seconds of evaluation for the tiny model
    shards.write_shard(tmp_path / "val_000000.bin", big_val)
    proc = subprocess.Popen(
        [sys.executable, SCRIPT]
        + TINY
        + ["--num_iterations=2", "--val_tokens=0", f"--val_files={tmp_path}/val_*.bin"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in proc.stdout:
            if line.startswith("step:2/2 train_loss"):
                trained_ms = int(re.search(r"train_time:(\d+)ms", line)[1])
                break
        time.sleep(0.5)  # well inside the final evaluation
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    last = newest_log(workdir).rstrip().splitlines()[-1]
    reported = int(
        re.fullmatch(
            r"interrupted after step 2 \((\d+)ms of training\); the log above is complete", last
        )[1]
    )
    assert trained_ms <= reported <= trained_ms + 50, (trained_ms, reported)


# One bad value per field of Hyperparameters: the test below fails for a field added without a
# range.
BAD_VALUES = dict(
    track="nope",
    train_files="nothing/train_*.bin",
    val_files="nothing/val_*.bin",
    val_tokens="-1",
    batch_size="100",
    device_batch_size="32",
    seq_len="0",
    bos_id="5000",
    vocab_size="500",
    num_layers="0",
    model_dim="8",
    num_heads="3",
    num_value_embeds="2",
    window_min="64",
    window_max="64",
    logit_softcap="inf",
    head_cutoffs="64,abc",
    embed_rows="-1",
    num_iterations="0",
    warmup_steps="-1",
    cooldown_frac="1.5",
    embed_lr="nan",
    head_lr="-1",
    scalar_lr="inf",
    muon_lr="nan",
    muon_momentum="1.5",
    muon_momentum_warmup_steps="-1",
    val_loss_every="-1",
    seed="-1",
    compile="maybe",
    threads="-1",
    dtype="fp8",
    peak_flops="nan",
    activation="gelu",
    value_embed_mix="sum",
    no_attention_layers="7,x",
    rotary="quarter",
    embed_dtype="fp8",
    adam_beta1="1.5",
    save_checkpoint="maybe",
    save_every="-1",
    resume="nothing.pt",
)


def test_every_hyperparameter_is_checked():
    assert set(BAD_VALUES) == {f.name for f in dataclasses.fields(train_gpt.Hyperparameters)}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_bad_value_of_any_hyperparameter_is_one_line_naming_it(
    workdir, monkeypatch, capsys, name
):
    message = main_stops(workdir, monkeypatch, capsys, f"--{name}={BAD_VALUES[name]}")
    assert f"--{name}" in message or BAD_VALUES[name] in message, message


@pytest.mark.parametrize(
    "args, blamed",
    [
        (["--window_max=64", "--window_min=4096"], "--window_max=64 is out of range"),
        (
            ["--window_min=4096"],
            "--window_min=4096 is out of range; valid: a positive multiple of 128"[:38],
        ),
        (
            ["--vocab_size=900"],
            "--vocab_size=900 is out of range; valid: 0 <= bos_id=50256 < vocab_size=900",
        ),
        (["--bos_id=99999"], "--bos_id=99999 is out of range"),
        (["--model_dim=8"], "--model_dim=8 is out of range; valid: model_dim >= 2 x 4^3"),
        (["--muon_lr=nan"], "--muon_lr=nan is out of range; valid: a finite number >= 0"),
        (["--muon_momentum=1.5"], "--muon_momentum=1.5 is out of range; valid: in [0, 1)"),
        (["--embed_lr=-1"], "--embed_lr=-1.0 is out of range"),
    ],
)
def test_a_rule_on_two_values_blames_the_one_given(args, blamed):
    with pytest.raises(SystemExit) as stop:
        train_gpt.parse_args(["--track=cpu_shakespeare", *args])
    assert str(stop.value.code).startswith(f"train_gpt.py: {blamed}"), stop.value.code


def test_val_tokens_beyond_the_val_set_names_what_it_holds(workdir, monkeypatch, capsys):
    err = main_stops(
        workdir, monkeypatch, capsys, "--val_tokens=5000"
    )  # val_000000.bin holds 5,000 tokens
    assert "--val_tokens=5000 is out of range; valid: at most 4999" in err and "rebuild" not in err


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_token_id_beyond_the_vocabulary_stops_the_run_before_training(
    workdir, tmp_path, monkeypatch, capsys, split
):
    """Found when the shards are loaded: before, a val shard's bad id lost the whole run at its
    final eval."""
    stream = np.tile(np.arange(1000), 60)
    stream[::97] = 999
    stream[1234] = 60000
    for name in ("train", "val"):
        shards.write_shard(
            tmp_path / f"{name}_000000.bin", stream if name == split else stream[:5000] % 1000
        )
    err = main_stops(
        workdir,
        monkeypatch,
        capsys,
        f"--train_files={tmp_path}/train_*.bin",
        f"--val_files={tmp_path}/val_*.bin",
    )
    assert (
        f"{tmp_path}/{split}_000000.bin holds token id 60000, not below vocab_size=1024" in err
    ), err


def test_a_shard_without_bos_id_is_refused(workdir, monkeypatch, capsys):
    err = main_stops(
        workdir, monkeypatch, capsys, "--bos_id=1000", "--vocab_size=1024"
    )  # ids < 1000 only
    assert "train_000000.bin holds no bos_id=1000, which starts every document" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_a_signal_logs_where_it_stopped_and_exits_128_plus_it(workdir, sig):
    proc = subprocess.Popen(
        [sys.executable, SCRIPT] + TINY + ["--num_iterations=100000"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("step:2/"):
                break
        proc.send_signal(sig)  # SIGTERM: a scheduler or `timeout`; SIGHUP: a closed terminal
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig
    assert newest_log(workdir).splitlines()[-1].startswith("interrupted after step ")


def test_a_log_that_cannot_be_created_is_one_line(tmp_path, workdir, monkeypatch, capsys):
    for name in ("train_000000.bin", "val_000000.bin"):
        os.symlink(workdir / name, tmp_path / name)
    (tmp_path / "logs").write_text("a file where the logs folder goes")
    err = main_stops(tmp_path, monkeypatch, capsys)
    assert re.fullmatch(
        r"train_gpt\.py: cannot write logs/\S+\.txt: File exists; run where logs/ can be written",
        err,
    ), err


def test_a_full_disk_mid_run_is_one_line(workdir):
    """RLIMIT_FSIZE stands in for a full disk: past it a write fails (EFBIG) instead of killing the
    process."""
    import resource

    limit = (
        len(open(SCRIPT).read().encode()) + 3000
    )  # the source, the environment, then a few step lines

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = subprocess.run(
        [sys.executable, SCRIPT] + TINY + ["--num_iterations=200"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_files,
    )
    err = one_line_error(p)
    assert re.fullmatch(
        r"train_gpt\.py: cannot write logs/\S+\.txt: File too large; "
        r"run where logs/ can be written",
        err,
    ), err


def test_one_layer_without_value_embeddings_trains(workdir, monkeypatch):
    """No U-net skip then (its weights are an empty tensor, no gradient): the grad norm skips it."""
    monkeypatch.chdir(workdir)
    args = ["--num_layers=1", "--num_value_embeds=0", "--num_iterations=2", "--val_loss_every=0"]
    monkeypatch.setattr(sys, "argv", [SCRIPT, *TINY, *args])
    train_gpt.main()
    assert newest_log(workdir).splitlines()[-1].startswith("final_val_loss:")


def test_cpu_track_computes_what_the_newest_cpu_record_computes(tmp_path):
    """The deterministic CPU mode (no compile, one thread) of the track's preset: every step line
    of this script equals the newest cpu_shakespeare record's frozen script's, whatever the
    refactor."""
    newest = sorted(glob.glob(os.path.join(ROOT, "records/cpu_shakespeare/20*/train_gpt.py")))[-1]
    os.symlink(os.path.join(ROOT, "data"), tmp_path / "data")
    args = ["--track=cpu_shakespeare", "--compile=false", "--threads=1", "--seed=7"]
    args += ["--num_iterations=8", "--val_loss_every=4", "--val_tokens=20000"]
    procs = []
    for script in (SCRIPT, newest):
        cmd = [sys.executable, script, *args]
        out = tempfile.TemporaryFile(mode="w+")
        procs.append((subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=out, text=True), out))
    lines = []
    for proc, out in procs:  # both at once: each runs on one thread
        assert proc.wait(timeout=300) == 0
        out.seek(0)
        steps = [re.sub(r" train_time:.*", "", x) for x in out if x.startswith("step:")]
        lines.append(steps)
    assert len(lines[0]) == 8 + 2 and lines[0] == lines[1], (newest, lines)


def test_a_closed_stdout_does_not_stop_the_run(workdir):
    """`python train_gpt.py ... | head -3`: printing fails once head exits; the log has it all."""
    cmd = [sys.executable, SCRIPT, *TINY, "--num_iterations=20", "--val_loss_every=0"]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()  # then the reader goes, as head does after its lines
    proc.stdout.close()
    err = proc.communicate(timeout=300)[1].decode()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert newest_log(workdir).splitlines()[-1].startswith("final_val_loss:")


def test_an_early_stop_writes_its_line_into_the_log(workdir, tmp_path, monkeypatch, capsys):
    raw = bytearray((workdir / "train_000000.bin").read_bytes())
    raw[0:4] = np.int32(1234).tobytes()
    bad = tmp_path / "train_000001.bin"
    bad.write_bytes(bytes(raw))
    err = main_stops(workdir, monkeypatch, capsys, f"--train_files={bad}")
    assert newest_log(workdir).splitlines()[-1] == err


def test_the_fineweb_track_on_a_cpu_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no FineWeb shards here: the refusal comes before the data
    monkeypatch.setattr(sys, "argv", [SCRIPT])
    with pytest.raises(SystemExit) as stop:
        train_gpt.main()
    assert str(stop.value.code) == (
        "train_gpt.py: the 8xh100_fineweb track needs GPUs; on a CPU pass --track=cpu_shakespeare"
    )


def test_an_unusable_compile_cache_is_one_line(tmp_path):
    (tmp_path / "file").write_text("a file where the cache folder goes")
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "file" / "cache"))
    p = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, env=env)
    err = one_line_error(p)
    assert err.endswith("Not a directory; set TORCHINDUCTOR_CACHE_DIR to a writable folder"), err


def test_a_compile_failure_is_one_line_with_its_cause_not_the_backend_header():
    """torch.compile's errors begin "backend='inductor' raised:"; the line logged shows the cause
    (here what a 1-wide adaptive softmax band once raised) and does not send a person to the cache
    folder first."""
    logged = []
    error = RuntimeError(
        "backend='inductor' raised:\nGuardOnDataDependentSymNode: Could not guard on Eq(u2, 1)\n"
        "Caused by: ..."
    )
    why = train_gpt.failure(None, logged.append, error)
    assert why.startswith("torch.compile failed: pass --compile=false"), why
    assert logged == [f"stopped: {why} (GuardOnDataDependentSymNode: Could not guard on Eq(u2, 1))"]
    other = ValueError("not a compile error")
    with pytest.raises(ValueError):
        train_gpt.failure(None, logged.append, other)


def children(pid):
    """The pids whose parent is pid, from /proc (no procps needed)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:  # a process that ended meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the name
            found.append(entry)
    return found


def test_a_dead_peer_rank_is_one_line_in_the_log(workdir):
    """torchrun, 2 ranks; rank 1 is killed after step 2: rank 0's collective fails ("Connection
    closed by peer"; 3 runs of 3 here) or torchrun's SIGTERM reaches it first: one line, both."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [SCRIPT, *TINY, "--num_iterations=100000"]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in proc.stdout:
            if line.startswith(b"step:2/"):
                break
        for pid in children(proc.pid):
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            if b"RANK=1" in environ:
                os.kill(int(pid), signal.SIGKILL)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    last = newest_log(workdir).splitlines()[-1]
    assert last.startswith(
        ("stopped: another rank stopped after step", "interrupted after step")
    ), last


def test_a_resumed_run_equals_a_straight_one(workdir):
    """Deterministic CPU mode: 8 steps straight (a checkpoint saved at step 4 on the way) against
    4 + resume + 4: the same step lines and final val loss; the checkpoint embeds the source."""
    args = ["--num_iterations=8", "--val_loss_every=4", "--threads=1", "--save_every=4"]
    run(workdir, *args)
    straight = newest_log(workdir)
    checkpoint = workdir / "logs" / f"{run_id(straight)}_step4.pt"
    assert f"checkpoint: logs/{checkpoint.name}" in straight
    assert torch.load(checkpoint, weights_only=True)["code"] == open(SCRIPT).read()
    run(workdir, *args[:3], f"--resume={checkpoint}")
    resumed = newest_log(workdir)
    assert f"resumed: {checkpoint} at step 4" in resumed
    steps = {k: v for k, v in step_lines(straight).items() if k[0] > 4}
    assert steps == step_lines(resumed) and len(steps) == 4 * 2 + 1
    final = re.compile(r"^final_val_loss:\S+", re.M)
    assert final.search(straight)[0] == final.search(resumed)[0]


def test_a_bad_checkpoint_is_one_line(workdir, tmp_path, monkeypatch, capsys):
    run(workdir, "--num_iterations=2", "--val_loss_every=0", "--save_checkpoint=true")
    checkpoint = workdir / "logs" / f"{run_id(newest_log(workdir))}_step2.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    err = main_stops(workdir, monkeypatch, capsys, f"--resume={truncated}")
    assert err.startswith(f"train_gpt.py: --resume={truncated}: not a readable checkpoint"), err
    two = "--num_iterations=2"
    err = main_stops(workdir, monkeypatch, capsys, f"--resume={checkpoint}", two, "--muon_lr=0.03")
    assert (
        err
        == f"train_gpt.py: --resume={checkpoint} has muon_lr=0.02, this run 0.03; pass --muon_lr"
    )
    state = torch.load(checkpoint, weights_only=True)
    state["code"] += "# a fork\n"
    torch.save(state, tmp_path / "fork.pt")
    err = main_stops(workdir, monkeypatch, capsys, f"--resume={tmp_path / 'fork.pt'}")
    assert "was written by another script" in err
    err = main_stops(workdir, monkeypatch, capsys, f"--resume={checkpoint}", "--num_iterations=2")
    assert err.endswith("is at step 2, its run's end: nothing to resume"), err
