"""The 8xH100 track's techniques, pinned on CPU: document-masked sliding-window attention
(FlexAttention on GPUs from per-block document bounds, written out over a boolean mask on CPUs),
window warmup, value embeddings, the ReLUGTz MLP, Muon's grouping, the full-softmax loss, fitting
a GPU's memory, and the full-size FineWeb configuration taking an optimizer step."""

import re
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import shards
import train_gpt
from test_train_gpt import SCRIPT, step_lines, newest_log

BOS = 7


def random_docs(B, T, starts_per_row, seed):
    """Token rows whose documents start (BOS) at random positions, some rows with none after t=0."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(10, 100, (B, T), generator=g)
    for b, n in enumerate(starts_per_row):
        idx[b, torch.randperm(T, generator=g)[:n]] = BOS
    return idx


@pytest.mark.parametrize("T", [520, 1024])
@pytest.mark.parametrize("window", [128, 256, 384, 1280])
def test_block_mask_equals_create_block_mask_and_sdpa(T, window):
    """The GPU path's BlockMask, built from per-block document bounds, has the blocks (partial and
    full) that create_block_mask finds by evaluating every (q, k), for boundaries at random
    positions, rows with none, and a last block cut short; flex_attention's forward (it runs on CPU,
    unfused) with either gives what the CPU path's boolean mask gives SDPA."""
    B, H, D = 3, 2, 16
    idx = random_docs(B, T, starts_per_row=[0, 4, 40], seed=window + T)
    idx[2, 256:300] = BOS  # runs of one-token documents
    docs = (idx == BOS).cumsum(1)
    ours = train_gpt.block_mask(docs, torch.tensor(window))
    mask_mod = train_gpt.document_window_mask(docs, torch.tensor(window))
    reference = create_block_mask(mask_mod, B, None, T, T, device="cpu")  # evaluates every (q, k)
    assert torch.equal(ours.to_dense(), reference.to_dense()), "the same blocks computed"
    # A query block cut short: create_block_mask calls a key block "partial" for its padded queries.
    whole = T // 128
    for kind in ("kv_num_blocks", "full_kv_num_blocks"):
        assert torch.equal(
            getattr(ours, kind)[..., :whole], getattr(reference, kind)[..., :whole]
        ), kind
    q, k, v = (
        torch.randn(B, H, T, D, generator=torch.Generator().manual_seed(i)) for i in range(3)
    )
    dense = train_gpt.attention_mask(idx, BOS, torch.tensor(window))
    assert dense.shape == (B, 1, T, T) and dense.dtype == torch.bool
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    with warnings.catch_warnings():
        # "flex_attention called without torch.compile()": expected on CPU
        warnings.simplefilter("ignore")
        for block_mask in (ours, reference):
            torch.testing.assert_close(
                flex_attention(q, k, v, block_mask=block_mask), sdpa, atol=1e-5, rtol=1e-5
            )


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_cpu_attention_written_out_equals_sdpa(dtype, tol):
    """The CPU path's attention, written out (softmax in fp32), gives in the output and in every
    gradient what SDPA gives with the same boolean mask, computed in fp32 from the same bf16-rounded
    inputs."""
    args = ["--model_dim=64", "--num_heads=2", "--seq_len=256", "--value_embed_mix=gate"]
    h = train_gpt.parse_args(args)
    torch.manual_seed(0)
    attn = train_gpt.CausalSelfAttention(
        h, train_gpt.Rotary(32, 256, half=False), value_embed=False
    )
    torch.nn.init.normal_(attn.proj.weight, std=0.1)  # zero-init would hide everything before it
    idx = random_docs(2, 256, starts_per_row=[3, 0], seed=1)
    mask = train_gpt.attention_mask(idx, BOS, torch.tensor(128))
    x = torch.randn(2, 256, 64).to(dtype)

    # The forward, with F.scaled_dot_product_attention in fp32 where the script writes it out.
    def reference(x):
        q, k, v = (lin(x).view(2, 256, 2, 32) for lin in (attn.q, attn.k, attn.v))
        q, k = attn.rotary(train_gpt.norm(q)), attn.rotary(train_gpt.norm(k))
        y = F.scaled_dot_product_attention(
            *(t.transpose(1, 2).float() for t in (q, k, v)), attn_mask=mask
        )
        return attn.proj(y.to(dtype).transpose(1, 2).reshape(2, 256, 64))

    outputs = []
    for forward in (lambda x: attn(x, None, mask), reference):
        attn.zero_grad()
        x_ = x.clone().requires_grad_()
        y = forward(x_)
        (y.float() * torch.linspace(-1, 1, 64)).sum().backward()
        outputs.append([y.float(), x_.grad.float(), *(p.grad.clone() for p in attn.parameters())])
    for ours, theirs in zip(*outputs):
        torch.testing.assert_close(ours, theirs, atol=tol * theirs.abs().max().item(), rtol=tol)


def test_mask_semantics():
    """Query q sees key k iff k <= q, same document, and k's block at most window / 128 - 1 blocks
    back: checked against a plain loop (the window counts whole blocks, what FlexAttention
    computes)."""
    idx = random_docs(1, 600, starts_per_row=[3], seed=3)
    docs = (idx[0] == BOS).cumsum(0).tolist()
    mask = train_gpt.attention_mask(idx, BOS, 256)[0, 0]
    expected = [
        [k <= q and docs[k] == docs[q] and q // 128 - k // 128 < 2 for k in range(600)]
        for q in range(600)
    ]
    assert mask.tolist() == expected
    assert mask.diagonal().all(), "every token sees itself, so no row of the softmax is empty"


def test_full_softmax_cross_entropy_equals_log_softmax_gather():
    """The full-softmax head's loss through F.cross_entropy (softcap kept) gives the loss and the
    gradients of the log_softmax(...).gather formulation it replaced."""
    torch.manual_seed(0)
    h = SimpleNamespace(model_dim=32, vocab_size=200, head_cutoffs="", logit_softcap=15.0)
    head = train_gpt.AdaptiveSoftmax(h)
    # Logits large enough for the softcap to matter.
    torch.nn.init.normal_(head.head.weight, std=2.0)
    x, targets = torch.randn(64, 32, requires_grad=True), torch.randint(0, 200, (64,))
    loss = head(x, targets)
    grads = torch.autograd.grad(loss, [x, head.head.weight])
    logits = 15.0 * torch.tanh((x @ head.head.weight.T) / 15.0)
    old = -F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1).sum()
    old_grads = torch.autograd.grad(old, [x, head.head.weight])
    torch.testing.assert_close(loss, old, atol=1e-4, rtol=1e-6)
    for new, before in zip(grads, old_grads):
        torch.testing.assert_close(new, before, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "gib, expected",
    [(24, (16384, 16384)), (40, (32768, 32768)), (80, (65536, 65536)), (141, (65536, 65536))],
)
def test_fit_to_memory_for_common_gpus(gib, expected):
    """The FineWeb configuration's rows halve until the estimate fits 80% of the GPU; the step's
    tokens stay."""
    h = train_gpt.parse_args([])
    num_params = sum(p.numel() for p in train_gpt.GPT(h).parameters())
    seq_len, device_batch_size = train_gpt.fit_to_memory(h, num_params, gib * 2**30)
    assert (seq_len, device_batch_size) == expected
    assert train_gpt.memory_estimate(h, num_params, device_batch_size) <= 0.8 * gib * 2**30
    assert h.batch_size % seq_len == 0 and seq_len >= h.window_max
    # Two rows per forward: fewer rows first.
    wide = train_gpt.parse_args(["--device_batch_size=131072"])
    assert train_gpt.fit_to_memory(wide, num_params, 80 * 2**30) == (65536, 65536)


def test_window_warmup_schedule():
    h = train_gpt.parse_args(["--num_iterations=1000"])
    windows = [train_gpt.window_size(step, h) for step in range(h.num_iterations + 1)]
    assert windows[0] == 128 and windows[-1] == h.window_max == 1792
    assert all(w % 128 == 0 for w in windows), "whole FlexAttention blocks"
    assert all(a <= b for a, b in zip(windows, windows[1:])), "the window only grows"
    # upstream's 2025-01-04 formula: linear from 128 to 1792 + 64 tokens, rounded down to blocks, so
    # 1 to 13 blocks get 1/13.5 of the steps each and 14 blocks the last 1/27
    shares = [windows[:-1].count(128 * blocks) for blocks in range(1, 15)]
    assert all(74 <= n <= 75 for n in shares[:13]) and 37 <= shares[13] <= 38, shares
    fixed = train_gpt.parse_args(["--window_min=1024", "--window_max=1024"])
    assert {train_gpt.window_size(s, fixed) for s in range(0, fixed.num_iterations, 7)} == {1024}


def tiny_hparams(*args):
    return train_gpt.parse_args(
        [
            "--track=cpu_shakespeare",
            "--num_layers=4",
            "--model_dim=64",
            "--vocab_size=128",
            "--head_cutoffs=",
            "--seq_len=32",
            f"--bos_id={BOS}",
            *args,
        ]
    )


def test_value_embeddings_change_nothing_at_init():
    """Their gates start at 0 and they are made last: with the same seed the model computes exactly
    what it computes without them, and only the gates get a gradient at the first step."""
    idx = random_docs(2, 32, starts_per_row=[2, 4], seed=0)
    targets = torch.randint(10, 100, (2, 32))
    losses = {}
    for n in (0, 2):
        torch.manual_seed(0)
        model = train_gpt.GPT(tiny_hparams(f"--num_value_embeds={n}"))
        g = torch.Generator().manual_seed(1)
        # Zero-init projections and head would make any comparison trivial.
        for p in model.parameters():
            if p.ndim == 2 and not p.any():
                torch.nn.init.normal_(p, std=0.05, generator=g)
        losses[n] = model(idx, 128, targets)
        if n:
            losses[n].backward()
            assert all(not ve.weight.grad.any() for ve in model.value_embeds)
            gates = [b.attn.ve_gate for b in model.blocks]
            # Layers 0, 1 and, reversed, 2, 3.
            assert [g is not None for g in gates] == [True, True, True, True]
            assert all(g.grad.abs() > 0 for g in gates)
    assert torch.equal(losses[0], losses[2])
    one = train_gpt.GPT(tiny_hparams("--num_value_embeds=1"))
    assert [b.attn.ve_gate is not None for b in one.blocks] == [True, False, False, True]


def test_embed_rows_are_frequency_ranks_and_adam_leaves_rows_without_gradient_as_they_are():
    """--embed_rows=N: an id's row is its training frequency rank, ranks N - 1 and up share the
    last row; rows no id of training maps to never get a gradient, so Adam never moves them (what
    makes N >= the distinct training ids + 1 train as the full tables do)."""
    torch.manual_seed(0)
    model = train_gpt.GPT(tiny_hparams("--embed_rows=8", "--num_value_embeds=1"))
    for p in model.parameters():  # zero-init projections, head and gates: no gradient at all
        if p.ndim < 2 or not p.any():
            torch.nn.init.normal_(p, std=0.05)
    counts = np.zeros(128)
    counts[[5, 9, 11]] = [30, 20, 10]  # ranks 0, 1, 2; then the unseen ids in id order: 0 -> 3 ...
    model.lm_head.rank_by(counts)
    tables = [model.embed, *model.value_embeds]
    assert [tuple(t.weight.shape) for t in tables] == [(8, 64), (8, 64)]
    before = [t.weight.detach().clone() for t in tables]
    adam = torch.optim.Adam([t.weight for t in tables], lr=0.1)
    idx = torch.tensor([[BOS, 5, 11, 4, 100, 5, 11, 101]])  # BOS=7, 4, 100, 101: ranks 7 and up
    for _ in range(3):
        model(idx, 128, idx.roll(-1, 1)).backward()
        for t in tables:
            touched = t.weight.grad.abs().sum(1) > 0
            assert touched.tolist() == [True, False, True, False, False, False, False, True]
        adam.step()
        adam.zero_grad()
    for t, b in zip(tables, before):
        moved = (t.weight != b).any(1)
        assert moved.tolist() == [True, False, True, False, False, False, False, True]


def test_relugtz_mlp_is_a_gated_dprelu_of_equal_size_trained_by_adam():
    """ReLUGTz: (beta relu(a - t) - alpha relu(t - a) + c) * b with [a, b] = fc(x), hidden 8/3 x dim
    so the block keeps ReLU^2's parameters (up to rounding and the 4 scalars); the scalars go to
    Adam, the matrices to Muon."""
    h = tiny_hparams("--activation=relugtz")
    mlp = train_gpt.MLP(h)
    torch.nn.init.normal_(mlp.proj.weight, std=0.05)  # zero-init would make the output trivially 0
    with torch.no_grad():
        mlp.dprelu.copy_(torch.tensor([0.3, 1.2, 0.1, -0.2]))
    x = torch.randn(5, h.model_dim)
    a, b = (x @ mlp.fc.weight.T).chunk(2, dim=-1)
    expected = (
        (1.2 * (a - 0.1).clamp(min=0) - 0.3 * (0.1 - a).clamp(min=0) - 0.2) * b
    ) @ mlp.proj.weight.T
    torch.testing.assert_close(mlp(x), expected)
    relu2 = train_gpt.MLP(tiny_hparams("--activation=relu2"))
    assert relu2.dprelu is None and relu2.fc.weight.shape == (4 * h.model_dim, h.model_dim)

    def n(m):
        return sum(p.numel() for p in m.parameters())

    assert abs(n(mlp) - n(relu2)) <= 3 * h.model_dim + 4
    mlp(x).sum().backward()
    assert mlp.dprelu.grad.abs().min() > 0, "each of the four scalars learns"
    model = train_gpt.GPT(h)
    optimizers = train_gpt.build_optimizers(h, model, rank=0, world_size=1)
    scalars = next(g["params"] for g in optimizers["adam"].param_groups if g["name"] == "scalars")
    assert all(any(b.mlp.dprelu is p for p in scalars) for b in model.blocks)
    assert all(p.ndim == 2 for g in optimizers["muon"].param_groups for p in g["params"])


def test_muon_groups_transposed_shapes_together():
    """Newton-Schulz costs the same on (a, b) and (b, a): one group, so ranks share them evenly."""
    params = [
        torch.nn.Parameter(torch.randn(*shape))
        for shape in [(16, 64), (64, 16), (16, 64), (16, 16)]
    ]
    opt = train_gpt.Muon(params, lr=0.02, momentum=0.95, ns_dtype=torch.float32)
    assert sorted(len(g["params"]) for g in opt.param_groups) == [1, 3]
    for p in params:
        p.grad = torch.randn_like(p)
    before = [p.detach().clone() for p in params]
    opt.step()
    for p, p0 in zip(params, before):
        update = (p0 - p.detach()) / 0.02 / max(1, p.size(0) / p.size(1)) ** 0.5
        expected = train_gpt.zeropower_via_newtonschulz5(
            p.grad.lerp(opt.state[p]["momentum_buffer"], 0.95), dtype=torch.float32
        )
        # Tall ones transposed back.
        torch.testing.assert_close(update, expected, atol=1e-4, rtol=1e-4)


def test_full_size_fineweb_configuration_steps_on_cpu(tmp_path):
    """The 8xH100 track's model exactly (12 layers, width 768, 3 value embeddings, 50,304-wide head,
    softcap 15, document mask from id 50256), one optimizer step on one 256-token row, so shape
    errors show here and not on a rented node (a 1,024-token row took 48 s here against 32: Muon's
    Newton-Schulz on the 72 matrices is most of it, whatever the row). In fp32: a CPU without bf16
    units (an AMD EPYC here) took over 10 minutes for the bf16 step; tests/test_cuda.py runs it in
    bf16."""
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 50257, size=4096)
    stream[rng.choice(4096, size=8, replace=False)] = 50256
    shards.write_shard(tmp_path / "fineweb_train_000000.bin", stream)
    shards.write_shard(tmp_path / "fineweb_val_000000.bin", stream[:2048])
    p = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            f"--train_files={tmp_path}/fineweb_train_*.bin",
            f"--val_files={tmp_path}/fineweb_val_*.bin",
            "--val_tokens=256",
            "--seq_len=256",
            "--batch_size=256",
            "--device_batch_size=256",
            "--num_iterations=1",
            "--compile=false",
            "--peak_flops=1e12",
            "--dtype=float32",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    log = newest_log(tmp_path)
    params = int(re.search(r"^params:(\d+) ", log, re.M)[1])
    # 12 MLPs and block lambdas; 11 attentions (the 8th layer has none), each with its 2 lambdas;
    # 5 * 50304 * 768: embed, 3 value embeds, head; 6 skip weights.
    mlps, attentions = 12 * (8 * 768 * 768 + 2), 11 * (4 * 768 * 768 + 2)
    assert params == mlps + attentions + 5 * 50304 * 768 + 6, params
    assert (
        "num_layers=12 model_dim=768 num_heads=6 num_value_embeds=3" in log
        and "logit_softcap=15.0" in log
    )
    steps = step_lines(log)
    assert np.isfinite(steps[(1, "train")]) and np.isfinite(steps[(1, "val")])
    assert abs(steps[(1, "train")] - np.log(50304)) < 0.1, (
        "zero-init head: a uniform first prediction"
    )
