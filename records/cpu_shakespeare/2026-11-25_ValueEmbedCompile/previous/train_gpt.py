"""GPT-2 speedrun trainer: one file, read top to bottom (hyperparameters, Muon, model, data, training).

Defaults: the 8xH100 FineWeb track at upstream's 2024-11-10 record configuration (#11 of the public
speedrun: 7.2 min on 8xH100 there; not yet run as a record here): a 162M-parameter GPT (12 layers,
width 768, untied 50,304-wide head) trained for 3000 steps of 524,288 tokens toward 3.28 val loss on
the first 10,485,760 tokens of fineweb_val_000000.bin, timed from the first to the last step.
    torchrun --standalone --nproc_per_node=8 train_gpt.py
`--track=cpu_shakespeare` is the CPU track at its current record (see README). The same file runs on
1..8 GPUs (gradient accumulation keeps the tokens per step), on several nodes, and on a CPU. Any
hyperparameter can be overridden as --name=value. Each run writes logs/<uuid>.txt, which embeds
this source, so a log alone reproduces its run.
"""
import copy
import ctypes
import dataclasses
import gc
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from glob import glob

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

with open(__file__) as f:
    code = f.read()
RULER = "=" * 100  # around the source at the top of a log, and after the environment

# -----------------------------------------------------------------------------
# Hyperparameters: the defaults are the 8xH100 FineWeb track's; a track preset overrides some.


@dataclass
class Hyperparameters:
    track: str = "8xh100_fineweb"
    # data
    train_files: str = "data/fineweb10B/fineweb_train_*.bin"
    val_files: str = "data/fineweb10B/fineweb_val_*.bin"
    val_tokens: int = 10485760  # fixed val set, whatever the world size; 0 = every val token
    batch_size: int = 8 * 64 * 1024  # tokens per optimizer step, over all ranks and micro-steps
    device_batch_size: int = 64 * 1024  # at most this many tokens per forward pass (fits an 80GB H100)
    seq_len: int = 1024
    # model
    vocab_size: int = 50304  # GPT-2's 50257, padded to a multiple of 128 for fast matmuls
    num_layers: int = 12
    model_dim: int = 768
    num_heads: int = 6
    logit_softcap: float = 30.0  # 0 = off
    head_cutoffs: str = ""  # frequency-rank cutoffs of an adaptive softmax, e.g. "2048,8192"; "" = full softmax
    # optimization
    num_iterations: int = 3000
    warmup_steps: int = 0
    cooldown_frac: float = 0.3  # linear decay to 0 over this final fraction of the steps
    embed_lr: float = 0.6
    head_lr: float = 0.008
    scalar_lr: float = 0.04
    muon_lr: float = 0.04
    muon_momentum: float = 0.95
    muon_momentum_warmup_steps: int = 300  # momentum ramps 0.85 -> muon_momentum
    # run
    val_loss_every: int = 125  # 0 = only at the end (never at step 0: it is ln(vocab_size) there)
    save_every: int = 0  # checkpoint every K steps into logs/ (0 = never)
    resume: str = ""  # checkpoint path to continue from
    sample_tokens: int = 0  # generate this many tokens at the end
    seed: int = 0  # 0 = a fresh seed each run (logged), so repeated runs measure the spread
    compile: bool = True
    threads: int = 0  # CPU threads per process; 0 = the cores divided among local ranks
    dtype: str = "auto"  # of activations and matmuls: float32, bfloat16, or auto = measured (see choose_dtype)
    peak_flops: float = 0.0  # per-device peak for MFU; 0 = datasheet on known GPUs, else measured


TRACKS = {
    "8xh100_fineweb": dict(),
    # 2 CPU threads: the record records/cpu_shakespeare/2026-11-25_AdaptiveSoftmax. At width 128 a
    # 50,304-wide softmax is ~87% of the FLOPs. Tokens/s measured on a 2-core Xeon with AMX (20-step
    # runs, 2 rounds, alternated): 2,478-2,548 with it, 7,126-7,237 with the adaptive softmax (its
    # first 2,048 ids are 88.0% of the training tokens, the first 8,192 97.8%), 13,887-14,084 once its
    # small logits let a step's 2,048 tokens go in one forward pass instead of 16. bf16 was slower
    # (12,125-12,559): its matmuls are 6x faster here, but not at this width, after the casts. Softcap
    # and torch.compile stay off (eager softcap cost 1.4x with the full softmax; compile untried here).
    "cpu_shakespeare": dict(
        train_files="data/shakespeare/shakespeare_train_*.bin",
        val_files="data/shakespeare/shakespeare_val_*.bin", val_tokens=0,
        batch_size=2048, device_batch_size=2048, seq_len=128,
        num_layers=4, model_dim=128, num_heads=2, logit_softcap=0.0, head_cutoffs="2048,8192",
        num_iterations=550, cooldown_frac=0.5, val_loss_every=110,
        muon_momentum_warmup_steps=30, compile=False, dtype="float32", sample_tokens=100),
}


def parse_args(argv):
    """--track=NAME picks a preset, then every --name=value overrides one field."""
    overrides = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            sys.exit(f"train_gpt.py: arguments look like --name=value, got {arg!r}")
        name, value = arg[2:].split("=", 1)
        overrides[name] = value
    track = overrides.pop("track", Hyperparameters.track)
    if track not in TRACKS:
        sys.exit(f"train_gpt.py: unknown track {track!r}; tracks: {', '.join(TRACKS)}")
    h = Hyperparameters(track=track, **TRACKS[track])
    names = [f.name for f in dataclasses.fields(h)]
    for name, value in overrides.items():
        if name not in names:
            sys.exit(f"train_gpt.py: unknown hyperparameter --{name}; valid: {', '.join(names)}")
        kind = type(getattr(h, name))
        try:
            if kind is bool:
                value = {"true": True, "1": True, "false": False, "0": False}[value.lower()]
            setattr(h, name, kind(value))
        except (KeyError, ValueError):
            sys.exit(f"train_gpt.py: --{name} wants a {kind.__name__}, got {value!r}")
    validate(h)
    return h


def validate(h):
    """Stops with one line naming the first hyperparameter out of its range, and the range."""
    cutoffs = h.head_cutoffs.split(",") if h.head_cutoffs else []
    ints = [int(c) for c in cutoffs if c.isdigit()]
    rules = [(name, getattr(h, name) >= 1, ">= 1") for name in ("num_iterations", "seq_len", "num_layers", "model_dim", "vocab_size")]
    rules += [(name, getattr(h, name) >= 0, ">= 0 (0 = off, every val token, or measured)") for name in (
        "val_tokens", "val_loss_every", "save_every", "sample_tokens", "threads", "warmup_steps",
        "muon_momentum_warmup_steps", "logit_softcap", "peak_flops")]
    rules += [
        ("batch_size", h.seq_len >= 1 and h.batch_size >= h.seq_len and h.batch_size % h.seq_len == 0,
         "a positive multiple of seq_len"),
        ("device_batch_size", h.device_batch_size >= h.seq_len, ">= seq_len"),
        ("num_heads", h.num_heads >= 1 and h.model_dim % h.num_heads == 0 and h.model_dim // h.num_heads % 2 == 0,
         f"divides model_dim={h.model_dim} into heads of even size (rotary turns pairs of dimensions)"),
        ("head_cutoffs", len(ints) == len(cutoffs) and ints == sorted(set(ints)) and all(0 < c < h.vocab_size for c in ints)
         and h.model_dim // 4 ** len(ints) >= 1, "increasing ranks in (0, vocab_size), comma-separated; '' = full softmax"),
        ("cooldown_frac", 0 <= h.cooldown_frac <= 1, "in [0, 1]"),
        ("dtype", h.dtype in ("auto", "float32", "bfloat16"), "auto, float32 or bfloat16")]
    for name, ok, valid in rules:
        if not ok:
            sys.exit(f"train_gpt.py: --{name}={getattr(h, name)} is out of range; valid: {valid}")

# -----------------------------------------------------------------------------
# Muon: MomentUm Orthogonalized by Newton-Schulz (Jordan et al., 2024)


def zeropower_via_newtonschulz5(G, steps=5, dtype=torch.bfloat16):
    """Approximately replace G = USV^T by UV^T. The quintic's coefficients are tuned for speed, not
    exactness: after 5 steps the singular values land in roughly [0.7, 1.2], which trains as well
    as exact orthogonalization. bf16 is enough for this and twice as fast as fp32 on GPUs."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.to(dtype)
    tall = G.size(0) > G.size(1)
    if tall:  # iterate on the wide orientation, so X @ X.T is the smaller Gram matrix
        X = X.T
    X = X / (X.norm() + 1e-7)  # Frobenius norm >= spectral norm, so all singular values <= 1
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if tall else X


class Muon(torch.optim.Optimizer):
    """SGD-momentum with Nesterov, whose update for each 2-D matrix is orthogonalized.

    Rank r orthogonalizes matrices r, r + world_size, ... of each same-shape group and the results
    are all-gathered, so the Newton-Schulz cost falls as 1/world_size. Momentum is updated for every
    matrix on every rank (elementwise, cheap), so the state is identical everywhere and a checkpoint
    from any rank resumes on any world size."""

    def __init__(self, params, lr, momentum, ns_dtype=torch.bfloat16, rank=0, world_size=1):
        params = list(params)
        shapes = sorted({p.shape for p in params})
        groups = [dict(params=[p for p in params if p.shape == s]) for s in shapes]
        super().__init__(groups, dict(lr=lr, momentum=momentum))
        self.ns_dtype, self.rank, self.world_size = ns_dtype, rank, world_size
        for p in params:  # allocated once, not at every step
            self.state[p]["momentum_buffer"] = torch.zeros_like(p)

    @torch.no_grad()
    def step(self):
        pending = []
        for group in self.param_groups:
            params, momentum = group["params"], group["momentum"]
            rows, cols = params[0].shape
            lr = group["lr"] * max(1, rows / cols) ** 0.5  # keeps the update's RMS shape-independent
            for p in params:
                self.state[p]["momentum_buffer"].lerp_(p.grad, 1 - momentum)
            for i in range(0, len(params), self.world_size):
                mine = i + self.rank
                if mine < len(params):
                    p = params[mine]
                    g = p.grad.lerp(self.state[p]["momentum_buffer"], momentum)  # Nesterov
                    update = zeropower_via_newtonschulz5(g, dtype=self.ns_dtype)
                else:  # this rank has no matrix left in the group: send padding
                    update = torch.zeros_like(params[0], dtype=self.ns_dtype)
                chunk = params[i:i + self.world_size]
                if self.world_size == 1:
                    pending.append((chunk, [update], lr, None))
                    continue
                gathered = [torch.empty_like(update) for _ in range(self.world_size)]
                handle = dist.all_gather(gathered, update.contiguous(), async_op=True)
                pending.append((chunk, gathered, lr, handle))
        for chunk, updates, lr, handle in pending:  # gathers overlap the Newton-Schulz work above
            if handle is not None:
                handle.wait()
            for p, update in zip(chunk, updates):
                p.add_(update, alpha=-lr)

# -----------------------------------------------------------------------------
# Model


def norm(x):
    return F.rms_norm(x, (x.size(-1),))  # parameter-free RMSNorm


class CastedLinear(nn.Linear):
    """fp32 master weights, matmul in the activations' dtype (bf16 on GPUs)."""

    def __init__(self, in_features, out_features, zero_init=False):
        super().__init__(in_features, out_features, bias=False)
        if zero_init:  # output projections start at 0, so each block starts as the identity
            self.weight.data.zero_()

    def forward(self, x):
        return F.linear(x, self.weight.type_as(x))


class Rotary(nn.Module):
    def __init__(self, head_dim, max_seq_len, base=10000):
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)
        angles = torch.outer(torch.arange(max_seq_len).float(), inv_freq)
        self.register_buffer("cos", angles.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", angles.sin()[None, :, None, :], persistent=False)

    def forward(self, x):  # x: (B, T, num_heads, head_dim)
        T = x.size(1)
        cos, sin = self.cos[:, :T].type_as(x), self.sin[:, :T].type_as(x)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, num_heads, max_seq_len):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v = (CastedLinear(dim, dim) for _ in range(3))  # separate for Muon
        self.proj = CastedLinear(dim, dim, zero_init=True)
        self.rotary = Rotary(dim // num_heads, max_seq_len)
        self.lamb = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, v1):
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, T, self.num_heads, -1) for lin in (self.q, self.k, self.v))
        v1 = v if v1 is None else v1
        v = (1 - self.lamb) * v + self.lamb * v1  # value residual: mix in the first layer's values
        q, k = self.rotary(norm(q)), self.rotary(norm(k))  # QK-norm keeps attention logits bounded
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C)), v1


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = CastedLinear(dim, 4 * dim)
        self.proj = CastedLinear(4 * dim, dim, zero_init=True)

    def forward(self, x):
        return self.proj(F.relu(self.fc(x)).square())  # ReLU^2 (So et al., 2021)


class Block(nn.Module):
    def __init__(self, dim, num_heads, max_seq_len):
        super().__init__()
        self.attn = CausalSelfAttention(dim, num_heads, max_seq_len)
        self.mlp = MLP(dim)
        self.lambdas = nn.Parameter(torch.tensor([1.0, 0.0]))  # learned mix of the embedding x0

    def forward(self, x, v1, x0):
        x = self.lambdas[0] * x + self.lambdas[1] * x0
        y, v1 = self.attn(norm(x), v1)
        x = x + y
        x = x + self.mlp(norm(x))
        return x, v1


class AdaptiveSoftmax(nn.Module):
    """The output distribution over all vocab_size ids (Grave et al., 2017). Ids are ranked by training
    frequency; ranks below cutoffs[0] get a logit each, and each later band of ranks one logit there
    (the band's probability) times a softmax of its own, from a projection div_value times narrower per
    band, computed only for the tokens whose targets are in the band. It is an exact, normalized
    distribution over all ids, so the loss is a true cross-entropy. No cutoffs: the full softmax."""

    def __init__(self, dim, vocab_size, cutoffs, softcap, div_value=4):
        super().__init__()
        self.bounds, self.softcap = [0, *cutoffs, vocab_size], softcap
        self.head = CastedLinear(dim, self.bounds[1] + len(cutoffs), zero_init=True)
        self.tails = nn.ModuleList(
            nn.Sequential(CastedLinear(dim, dim // div_value ** (i + 1)),
                          CastedLinear(dim // div_value ** (i + 1), hi - lo, zero_init=True))
            for i, (lo, hi) in enumerate(zip(self.bounds[1:-1], self.bounds[2:])))
        self.register_buffer("rank_of", torch.arange(vocab_size))  # id -> frequency rank
        self.band_shares = [1.0] * len(cutoffs)  # each band's share of the training targets

    def rank_by(self, counts):
        """Rank the ids by their counts in the training stream (0 = the most frequent)."""
        order = np.argsort(-counts, kind="stable")
        self.rank_of[torch.from_numpy(order)] = torch.arange(len(order))
        self.band_shares = [counts[order[lo:hi]].sum() / counts.sum() for lo, hi in zip(self.bounds[1:-1], self.bounds[2:])]

    def log_softmax(self, layer, x):
        logits = layer(x).float()
        if self.softcap:  # tanh softcap (Gemma 2)
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return F.log_softmax(logits, dim=-1)

    def forward(self, x, targets):
        """log p(target) for each row of x."""
        ranks = self.rank_of[targets] if self.tails else targets
        head = self.log_softmax(self.head, x)
        band = torch.bucketize(ranks, self.rank_of.new_tensor(self.bounds[1:-1]), right=True)  # 0 = head
        logp = head.gather(1, torch.where(band == 0, ranks, self.bounds[1] + band - 1)[:, None]).squeeze(1)
        for i, tail in enumerate(self.tails):
            rows = (band == i + 1).nonzero().squeeze(1)
            within = (ranks[rows] - self.bounds[i + 1])[:, None]
            logp = logp.index_add(0, rows, self.log_softmax(tail, x[rows]).gather(1, within).squeeze(1))
        return logp

    def all_log_probs(self, x):
        """log p of every id, in id order (for sampling)."""
        head = self.log_softmax(self.head, x)
        c = self.bounds[1]
        by_rank = torch.cat([head[:, :c]] + [head[:, c + i, None] + self.log_softmax(tail, x)
                                             for i, tail in enumerate(self.tails)], dim=1)
        return by_rank[:, self.rank_of]


class GPT(nn.Module):
    def __init__(self, h, dtype=torch.float32):
        super().__init__()
        self.dtype = dtype  # of the activations; choose_dtype() sets it
        self.embed = nn.Embedding(h.vocab_size, h.model_dim)
        self.blocks = nn.ModuleList(Block(h.model_dim, h.num_heads, h.seq_len) for _ in range(h.num_layers))
        # U-net: the output of block i (first half) is added, weighted, into block L-1-i (second half)
        self.skip_weights = nn.Parameter(torch.ones(h.num_layers // 2))
        cutoffs = [int(c) for c in h.head_cutoffs.split(",") if c]
        self.lm_head = AdaptiveSoftmax(h.model_dim, h.vocab_size, cutoffs, h.logit_softcap)  # untied from embed

    def forward(self, idx, targets=None, reduction="mean"):
        x = x0 = norm(self.embed(idx).to(self.dtype))
        v1, skips = None, []
        num_skips, L = len(self.skip_weights), len(self.blocks)
        for i, block in enumerate(self.blocks):
            if i >= L - num_skips:
                x = x + self.skip_weights[i - (L - num_skips)] * skips.pop()
            x, v1 = block(x, v1, x0)
            if i < num_skips:
                skips.append(x)
        x = norm(x).flatten(0, 1)
        if targets is None:
            return self.lm_head.all_log_probs(x).view(*idx.shape, -1)
        loss = -self.lm_head(x, targets.reshape(-1))
        return loss.sum() if reduction == "sum" else loss.mean()

# -----------------------------------------------------------------------------
# Data: llm.c shards, 256 int32 header (magic 20240520, version 1, token count) then uint16 tokens


def data_command(pattern):
    if "shakespeare" in pattern:
        return "python data/shakespeare.py"
    if "fineweb" in pattern:
        return "python data/cached_fineweb10B.py"
    return "python data/fineweb.py <your text files>"


def shard_size(path):
    """Token count of a shard; stops the run with one line naming the file if it is not valid."""
    header = np.fromfile(path, dtype="<i4", count=256)
    fix = f"delete it and rebuild it with: {data_command(path)}"
    if len(header) < 256 or header[0] != 20240520 or header[1] != 1:
        sys.exit(f"train_gpt.py: {path}: not an llm.c token shard (bad magic or version); {fix}")
    expected = 256 * 4 + 2 * int(header[2])
    if os.path.getsize(path) != expected:
        sys.exit(f"train_gpt.py: {path}: header says {expected} bytes, file has "
                 f"{os.path.getsize(path)}: truncated or corrupt; {fix}")
    return int(header[2])


def find_shards(pattern):
    files = sorted(f for f in glob(pattern) if os.path.isfile(f))
    if not files:
        sys.exit(f"train_gpt.py: no files match {pattern}; fetch or build them with: {data_command(pattern)}")
    return files, [shard_size(f) for f in files]


def load_tokens(path):
    return np.fromfile(path, dtype="<u2", offset=256 * 4)


class DataLoader:
    """The training stream, one optimizer step at a time: each call returns the next batch_size + 1
    tokens (inputs, and targets shifted by one). Every rank gets the whole span and uses only its
    own rows of it, so a step's tokens do not depend on how they are split over ranks and
    micro-steps. Shards are read in order and wrap around."""

    def __init__(self, pattern, batch_size):
        self.files, sizes = find_shards(pattern)
        self.batch_size = batch_size
        if min(sizes) < batch_size + 1:
            sys.exit(f"train_gpt.py: {self.files[sizes.index(min(sizes))]} has {min(sizes)} tokens, "
                     f"fewer than one step of batch_size = {batch_size}")
        self.load_state(dict(shard=0, pos=0))

    def state(self):
        return dict(shard=self.shard, pos=self.pos)

    def load_state(self, state):
        self.shard, self.pos = state["shard"], state["pos"]
        self.tokens = load_tokens(self.files[self.shard])

    def next_batch(self):
        if self.pos + self.batch_size + 1 > len(self.tokens):
            self.load_state(dict(shard=(self.shard + 1) % len(self.files), pos=0))
        self.pos += self.batch_size
        return self.tokens[self.pos - self.batch_size:self.pos + 1]


def load_val_tokens(pattern, val_tokens):
    """The first val_tokens + 1 tokens of the val stream (val_tokens predictions); 0 = all of it."""
    files, sizes = find_shards(pattern)
    needed = val_tokens + 1 if val_tokens else sum(sizes)
    if needed > sum(sizes) or needed < 2:
        sys.exit(f"train_gpt.py: {pattern} holds {sum(sizes)} tokens; val_tokens={val_tokens} needs "
                 f"{max(needed, 2)} (a prediction needs 2); rebuild it with: {data_command(pattern)}")
    tokens, total = [], 0
    for f in files:
        if total < needed:
            tokens.append(load_tokens(f)[:needed - total])
            total += len(tokens[-1])
    return np.concatenate(tokens)


@torch.no_grad()
def evaluate(model, tokens, h, rank, world_size, device):
    """Mean loss over every next-token prediction in `tokens`, cut into seq_len windows shared
    round-robin over ranks; the last window may be shorter. The result is independent of the
    world size up to float summation order."""
    n, T, B = len(tokens) - 1, h.seq_len, max(1, h.device_batch_size // h.seq_len)
    starts = list(range(0, n, T))[rank::world_size]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for i in range(0, len(starts), B):
        batch = starts[i:i + B]
        for length in sorted({min(T, n - s) for s in batch}):
            rows = np.stack([tokens[s:s + length + 1] for s in batch if min(T, n - s) == length])
            buf = torch.from_numpy(rows.astype(np.int64)).to(device)
            loss_sum += model(buf[:, :-1], buf[:, 1:], reduction="sum").double()
    if world_size > 1:
        dist.all_reduce(loss_sum)
    return loss_sum.item() / n

# -----------------------------------------------------------------------------
# Schedules, measurement, checkpoints, sampling


def lr_multiplier(step, h):
    """Trapezoid: linear warmup, constant, then linear cooldown to 0 (Hagele et al., 2024)."""
    cooldown_steps = max(1, int(h.cooldown_frac * h.num_iterations))
    if step < h.warmup_steps:
        return (step + 1) / h.warmup_steps
    return min(1.0, (h.num_iterations - step) / cooldown_steps)


def muon_momentum(step, h):
    frac = min(1.0, step / h.muon_momentum_warmup_steps) if h.muon_momentum_warmup_steps else 1.0
    return (1 - frac) * 0.85 + frac * h.muon_momentum


def flops_per_token(model, h):
    """Training FLOPs per token: 6 per matmul weight, plus attention's 12 * layers * dim * seq_len
    (the PaLM paper's appendix B count). The embedding is a lookup, not a matmul. An adaptive softmax's
    band runs only for the tokens whose targets lie in it: its weights count by that share."""
    matmul_params = sum(p.numel() for p in model.parameters() if p.ndim == 2) - model.embed.weight.numel()
    for share, tail in zip(model.lm_head.band_shares, model.lm_head.tails):
        matmul_params -= (1 - share) * sum(p.numel() for p in tail.parameters())
    return round(6 * matmul_params + 12 * h.num_layers * h.model_dim * h.seq_len)


def keep_freed_memory():
    """glibc gives freed buffers above a size threshold back to the OS and page-faults them in afresh on
    their next use; a training step frees and reallocates the same buffers every time. Raising the mmap
    and trim thresholds to 1 GiB keeps them (tokens/s on the CPU track: see README). No-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


def cpu_name():
    """The CPU's model and its bf16 matmul units (AVX512-BF16, AMX), from /proc/cpuinfo on Linux."""
    try:
        lines = open("/proc/cpuinfo").read().split("\n\n")[0].splitlines()
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    except (OSError, ValueError):
        return platform.processor() or platform.machine()
    flags = info.get("flags", "").split()
    units = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"{info.get('model name', '?')}; bf16 units: {' '.join(units) or 'none'}"


def matmul_flops(device, dtype, sync, n=2048, iters=8):
    """FLOP/s of an n^3 matmul here: a warm-up, then iters of them with one sync at the end."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync()
    return 2 * n ** 3 * iters / (time.perf_counter() - t0)


def peak_flops(h, dtype, device, sync):
    """The per-device peak FLOP/s that MFU is taken against, and where it comes from."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    if h.peak_flops:
        return h.peak_flops, "given"
    if "H100" in gpu:  # the datasheets' dense bf16 peaks
        return (756e12, "H100 PCIe datasheet") if "PCIe" in gpu else (989e12, "H100 SXM datasheet")
    return matmul_flops(device, dtype, sync), f"measured, 2048^3 {str(dtype)[6:]} matmul"


def warm_up(h, step_fn, model, optimizers, loader, sync, start_step):
    """Training steps before the timed loop, whose effects are then undone exactly (weights, optimizer
    state, data position): torch.compile compiles in them, and with dtype=auto on a CPU they time a
    step in fp32 and in bf16 to pick the faster (bf16 matmuls are 2-6x faster on CPUs with
    AVX512-BF16 or AMX units and many times slower without, and at a small width the casts around
    them can cost more than they save: measured, not assumed). Sets and returns the dtype and why."""
    cuda = next(model.parameters()).is_cuda
    names = [h.dtype] if h.dtype != "auto" else ["bfloat16"] if cuda else ["float32", "bfloat16"]
    initial = copy.deepcopy(dict(model=model.state_dict(), optimizers=[o.state_dict() for o in optimizers],
                                 loader=loader.state()))
    times = {}
    for name in names if h.compile or len(names) > 1 else []:
        model.dtype = optimizers[1].ns_dtype = getattr(torch, name)
        ms = []
        for step in range(start_step, start_step + 4):
            sync()
            t0 = time.perf_counter()
            step_fn(step)
            sync()
            ms.append(1000 * (time.perf_counter() - t0))
        times[name] = min(ms[1:])  # the first step compiles or warms up
        model.load_state_dict(initial["model"])
        for opt, state in zip(optimizers, initial["optimizers"]):
            opt.load_state_dict(state)
        loader.load_state(initial["loader"])
    name = min(times, key=times.get) if len(names) > 1 else names[0]
    if dist.is_initialized() and len(names) > 1:  # all ranks must agree: rank 0's measurement decides
        choice = torch.tensor(names.index(name))
        dist.broadcast(choice, 0)
        name = names[choice]
    model.dtype = optimizers[1].ns_dtype = getattr(torch, name)
    why = ("given" if h.dtype != "auto" else "GPU" if cuda else "the faster training step here: "
           + " vs ".join(f"{n} {t:.0f} ms" for n, t in times.items()))
    return model.dtype, why


# Hyperparameters that change only how a run is watched or where it runs, not what it computes: a
# checkpoint resumes under other values of these, and of no others.
RUN_ONLY = {"resume", "save_every", "val_loss_every", "sample_tokens", "seed", "threads", "compile", "peak_flops"}


def save_checkpoint(path, h, model, optimizers, step, loader, train_time_ms):
    state = dict(hparams=dataclasses.asdict(h), model=model.state_dict(), step=step, loader=loader.state(),
                 optimizers=[opt.state_dict() for opt in optimizers], train_time_ms=train_time_ms,
                 rng=torch.get_rng_state(), cuda_rng=torch.cuda.get_rng_state_all())
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # atomic: a crash mid-save leaves the previous checkpoint intact


def load_checkpoint(h, model, optimizers, loader, device):
    """Restores a save_checkpoint() file into the run, after checking that it is whole and was saved
    with these hyperparameters (RUN_ONLY aside); one line and exit otherwise. Returns (step, train ms)."""
    fix = "resume from a logs/<run>_step<N>.pt written by --save_every"
    try:
        ckpt = torch.load(h.resume, map_location=device, weights_only=False)
        assert {"hparams", "model", "optimizers", "step", "loader", "train_time_ms", "rng"} <= ckpt.keys()
    except Exception as e:
        sys.exit(f"train_gpt.py: {h.resume}: not a complete checkpoint ({type(e).__name__}); {fix}")
    saved = {k: v for k, v in ckpt["hparams"].items() if k not in RUN_ONLY}
    differ = [f"{k}={v}" for k, v in saved.items() if getattr(h, k, None) != v]
    if differ:
        sys.exit(f"train_gpt.py: {h.resume} was saved with {' '.join(differ)}; resume with those")
    model.load_state_dict(ckpt["model"])
    for opt, state in zip(optimizers, ckpt["optimizers"]):
        opt.load_state_dict(state)
    loader.load_state(ckpt["loader"])
    torch.set_rng_state(ckpt["rng"])
    if device.type == "cuda" and ckpt.get("cuda_rng"):
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    h.seed = ckpt["hparams"]["seed"]
    return ckpt["step"], ckpt["train_time_ms"]


def gpt2_encoding():
    """GPT-2's tokenizer from data/tokenizer.py, which also works where tiktoken's host is unreachable."""
    sys.path.insert(0, "data")
    from tokenizer import get_gpt2_encoding
    return get_gpt2_encoding()


@torch.no_grad()
def sample(model, h, device, num_tokens, top_k=50):
    """Top-k sampling from <|endoftext|>, i.e. the start of a new document."""
    generator = torch.Generator(device).manual_seed(h.seed)
    idx = torch.tensor([[50256]], device=device)
    for _ in range(num_tokens):
        logits = model(idx[:, -h.seq_len:])[0, -1, :50257]  # the padded ids are never real tokens
        values, indices = logits.topk(top_k)
        choice = torch.multinomial(F.softmax(values, dim=-1), 1, generator=generator)
        idx = torch.cat([idx, indices[choice].view(1, 1)], dim=1)
    return gpt2_encoding().decode(idx[0, 1:].tolist())

# -----------------------------------------------------------------------------
# Training: set-up, one step, the loop, the report


def init_process(h):
    """This process's rank, world size and device; joins the process group when there are several."""
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank, local_world_size = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        keep_freed_memory()
    torch.set_num_threads(h.threads or max(1, os.cpu_count() // local_world_size))
    if world_size > 1:
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    return rank, world_size, device


def split_batch(h, world_size):
    """A step's batch_size tokens are rows of seq_len, dealt to world_size ranks x grad_accum_steps
    micro-steps of at most device_batch_size tokens, as evenly as possible: 8 GPUs take 64 rows each
    in 1 micro-step, 3 GPUs 56-57 rows in each of 3. Any world size trains on the same tokens. Slot k
    (micro-step k // world_size on rank k % world_size) gets rows bounds[k]:bounds[k + 1]."""
    num_rows = h.batch_size // h.seq_len
    grad_accum_steps = math.ceil(num_rows / (world_size * (h.device_batch_size // h.seq_len)))
    slots = world_size * grad_accum_steps
    if num_rows < slots:
        sys.exit(f"train_gpt.py: {num_rows} rows per step cannot fill {world_size} ranks x {grad_accum_steps} "
                 f"micro-steps; raise batch_size")
    return grad_accum_steps, [k * num_rows // slots for k in range(slots + 1)]


def build_optimizers(h, model, rank, world_size):
    """Muon for the blocks' matrices; Adam for the embedding, the head and the scalars."""
    matrices = [p for p in model.blocks.parameters() if p.ndim == 2]
    scalars = [p for p in model.parameters() if p.ndim < 2]
    adam = torch.optim.Adam([dict(params=[model.embed.weight], lr=h.embed_lr),
                             dict(params=model.lm_head.parameters(), lr=h.head_lr),
                             dict(params=scalars, lr=h.scalar_lr)], betas=(0.9, 0.95), fused=True)
    muon = Muon(matrices, lr=h.muon_lr, momentum=h.muon_momentum, ns_dtype=model.dtype, rank=rank, world_size=world_size)
    for opt in (adam, muon):
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return [adam, muon]


def open_log(master, run_id):
    """log(msg): rank 0 writes msg to logs/<run_id>.txt, which starts with this source, then prints it."""
    if not master:
        return lambda msg: None
    os.makedirs("logs", exist_ok=True)
    logfile = open(f"logs/{run_id}.txt", "w", buffering=1)  # line-buffered: a crash loses nothing
    logfile.write(f"{RULER}\n{code}{RULER}\n")

    def log(msg):
        logfile.write(msg + "\n")  # the file first: an interrupt must not leave it behind stdout
        print(msg, flush=True)
    return log


def train_step(step, h, model, ddp_model, optimizers, loader, split, rank, world_size, device):
    """One optimizer step on the next batch_size tokens; returns the mean train loss and grad norm."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * lr_multiplier(step, h)
    for group in optimizers[1].param_groups:
        group["momentum"] = muon_momentum(step, h)
    (grad_accum_steps, bounds), T = split, h.seq_len
    tokens, train_loss = loader.next_batch(), torch.zeros((), device=device)
    for micro_step in range(grad_accum_steps):
        k = micro_step * world_size + rank
        buf = torch.from_numpy(tokens[bounds[k] * T:bounds[k + 1] * T + 1].astype(np.int64)).to(device, non_blocking=True)
        last_micro = micro_step == grad_accum_steps - 1
        with ddp_model.no_sync() if world_size > 1 and not last_micro else nullcontext():
            loss = ddp_model(buf[:-1].view(-1, T), buf[1:].view(-1, T), reduction="sum")
            # DDP averages over ranks, so this makes the gradient the mean over the step's tokens
            (loss * world_size / h.batch_size).backward()
        train_loss += loss.detach()
    if world_size > 1:
        dist.all_reduce(train_loss)
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    for opt in optimizers:
        opt.step()
    model.zero_grad(set_to_none=True)
    return train_loss.item() / h.batch_size, grad_norm.item()


def train_loop(h, step_fn, evaluate_fn, save_fn, log, sync, start_step, train_time_ms):
    """Steps start_step..num_iterations; returns the final val loss and the training time (ms). The
    clock runs only while training: it stops for evaluation and checkpoints. Ctrl-C logs where it
    stopped and exits 130."""
    step, t0 = start_step, None  # t0: when the clock last started, None while it is stopped

    def now():
        return train_time_ms + (1000 * (time.perf_counter() - t0) if t0 is not None else 0.0)

    try:
        sync()
        t0 = time.perf_counter()
        while True:
            if step == h.num_iterations or (h.val_loss_every and step > 0 and step % h.val_loss_every == 0):
                sync()
                train_time_ms, t0 = now(), None
                val_loss = evaluate_fn()
                log(f"step:{step}/{h.num_iterations} val_loss:{val_loss:.4f} train_time:{train_time_ms:.0f}ms "
                    f"step_avg:{train_time_ms / max(1, step):.2f}ms")
                if step == h.num_iterations:
                    return val_loss, train_time_ms
                sync()
                t0 = time.perf_counter()
            if h.save_every and step > start_step and step % h.save_every == 0:
                train_time_ms, t0 = now(), None
                if save_fn:
                    save_fn(step, train_time_ms)
                t0 = time.perf_counter()
            train_loss, grad_norm = step_fn(step)
            step += 1
            lr, ms = lr_multiplier(step - 1, h) * h.muon_lr, now()
            log(f"step:{step}/{h.num_iterations} train_loss:{train_loss:.4f} lr:{lr:.5f} grad_norm:{grad_norm:.4f} "
                f"train_time:{ms:.0f}ms step_avg:{ms / step:.2f}ms")
            if not math.isfinite(train_loss):
                log(f"stopped: non-finite train loss at step {step}; try a lower lr or more warmup_steps")
                sys.exit(1)
    except KeyboardInterrupt:
        log(f"interrupted after step {step} ({now():.0f}ms of training); the log above is complete")
        sys.exit(130)


def report(h, model, log, master, device, val_loss, train_time_ms, tokens_per_s, total_peak):
    mfu = flops_per_token(model, h) * tokens_per_s / total_peak
    peak_mem = (torch.cuda.max_memory_allocated() if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    log(f"peak_memory:{peak_mem // 2**20}MiB tokens_seen:{h.num_iterations * h.batch_size} "
        f"tokens_per_s:{tokens_per_s:.0f} mfu:{100 * mfu:.2f}%")
    log(f"final_val_loss:{val_loss:.4f} train_time:{train_time_ms:.0f}ms")
    if master and h.sample_tokens:
        try:
            log("sample: " + sample(model, h, device, h.sample_tokens))
        except Exception as e:  # the run is done and logged; a missing tokenizer must not fail it
            log(f"sample skipped: no GPT-2 tokenizer ({type(e).__name__}); run: python data/tokenizer.py")


def main():
    h = parse_args(sys.argv[1:])
    rank, world_size, device = init_process(h)
    cuda, master = device.type == "cuda", rank == 0
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    split = split_batch(h, world_size)
    loader = DataLoader(h.train_files, h.batch_size)
    val_tokens = load_val_tokens(h.val_files, h.val_tokens)

    if h.seed == 0:
        h.seed = int.from_bytes(os.urandom(4), "little") or 1
    torch.manual_seed(h.seed)
    model = GPT(h)
    if model.lm_head.tails:
        model.lm_head.rank_by(sum(np.bincount(load_tokens(f), minlength=h.vocab_size) for f in loader.files))
    model = model.to(device)
    compiled = torch.compile(model) if h.compile else model
    # broadcast_buffers=False: the buffers (rotary tables, id ranks) are the same on every rank already
    ddp_model = (DDP(compiled, device_ids=[device.index] if cuda else None, broadcast_buffers=False)
                 if world_size > 1 else compiled)
    optimizers = build_optimizers(h, model, rank, world_size)
    start_step, resumed_ms = load_checkpoint(h, model, optimizers, loader, device) if h.resume else (0, 0.0)

    def step_fn(step):
        return train_step(step, h, model, ddp_model, optimizers, loader, split, rank, world_size, device)

    dtype, dtype_why = warm_up(h, step_fn, model, optimizers, loader, sync, start_step)
    peak, peak_source = peak_flops(h, dtype, device, sync)

    run_id = str(uuid.uuid4())
    log = open_log(master, run_id)
    log(f"python:{platform.python_version()} torch:{torch.__version__} device:{device.type} "
        f"({torch.cuda.get_device_name(device) if cuda else cpu_name()}) world_size:{world_size} "
        f"grad_accum_steps:{split[0]} threads:{torch.get_num_threads()} dtype:{str(dtype)[6:]} ({dtype_why})")
    if master and shutil.which("nvidia-smi"):
        log(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout.rstrip())
    log("hparams: " + " ".join(f"{k}={v}" for k, v in dataclasses.asdict(h).items()))
    log(f"params:{sum(p.numel() for p in model.parameters())} flops_per_token:{flops_per_token(model, h)} "
        f"peak_flops:{peak:.3g} ({peak_source}) train_shards:{len(loader.files)} val_tokens:{len(val_tokens) - 1}")
    if h.resume:
        log(f"resumed from {h.resume} at step {start_step}")
    log(f"log: logs/{run_id}.txt")
    log(RULER)

    evaluate_fn = lambda: evaluate(compiled, val_tokens, h, rank, world_size, device)
    save_fn = lambda step, ms: save_checkpoint(f"logs/{run_id}_step{step}.pt", h, model, optimizers, step, loader, ms)
    val_loss, train_time_ms = train_loop(h, step_fn, evaluate_fn, save_fn if master else None, log, sync,
                                         start_step, resumed_ms)
    tokens_per_s = (h.num_iterations - start_step) * h.batch_size / ((train_time_ms - resumed_ms) / 1000)
    report(h, model, log, master, device, val_loss, train_time_ms, tokens_per_s, peak * world_size)
    if world_size > 1:
        del ddp_model  # its reducer must go before the process group, or gloo aborts at exit (torch 2.13)
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # before or after the training loop, which logs its own interruption
        print("train_gpt.py: interrupted", file=sys.stderr)
        sys.exit(130)
