"""GPT-2 speedrun trainer: one file, read top to bottom (hyperparameters, Muon, model, data, training).

Defaults: the 8xH100 FineWeb track with the public speedrun's techniques up to its 2025-01-04 record
(3.4 min there): 12 layers of width 768 with three value embeddings, attention within documents over a
window growing from 128 to 1,792 tokens, 1390 steps of 8 x 64K packed tokens toward 3.28 val loss on
the first 10,485,760 tokens of fineweb_val_000000.bin. Not yet run on 8 GPUs here; README projects
its time. Run with: torchrun --standalone --nproc_per_node=8 train_gpt.py
`--track=cpu_shakespeare` is the CPU track's record (see README). The same file runs on 1..8 GPUs, on
several nodes, and on a CPU; any hyperparameter is overridden as --name=value. Each run writes
logs/<uuid>.txt, which embeds this source, so a log alone reproduces its run.
"""
import copy
import ctypes
import dataclasses
import gc
import math
import os
import platform
import re
import resource
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
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
from torch.nn.parallel import DistributedDataParallel as DDP

code = open(__file__).read()  # embedded in every log
RULER = "=" * 100  # around the source at the top of a log, and after the environment

# -----------------------------------------------------------------------------
# Hyperparameters: the defaults are the 8xH100 FineWeb track's; a track preset overrides some.

@dataclass
class Hyperparameters:
    track: str = "8xh100_fineweb"
    train_files: str = "data/fineweb10B/fineweb_train_*.bin"
    val_files: str = "data/fineweb10B/fineweb_val_*.bin"
    val_tokens: int = 10485760  # fixed val set, whatever the world size; 0 = every val token
    batch_size: int = 8 * 64 * 1024  # tokens per optimizer step, over all ranks and micro-steps
    device_batch_size: int = 64 * 1024  # at most this many tokens per forward pass (fits an 80GB H100)
    seq_len: int = 64 * 1024  # documents packed in one long row: the mask below keeps them apart
    bos_id: int = 50256  # <|endoftext|>, which starts every document
    vocab_size: int = 50304  # GPT-2's 50257, padded to a multiple of 128 for fast matmuls
    num_layers: int = 12
    model_dim: int = 768
    num_heads: int = 6
    num_value_embeds: int = 3  # tables for the first and, in reverse, the last layers' attention values
    window_min: int = 128  # the attention window grows linearly from this many tokens at step 0 ...
    window_max: int = 1792  # ... to this many at the end
    logit_softcap: float = 15.0  # tanh cap on the logits: 15 beat 30 upstream (3.57 -> 3.4 min); 0 = off
    head_cutoffs: str = ""  # frequency-rank cutoffs of an adaptive softmax, e.g. "2048,8192"; "" = full softmax
    num_iterations: int = 1390
    warmup_steps: int = 0
    cooldown_frac: float = 0.4  # linear decay to 0 over this final fraction of the steps
    embed_lr: float = 0.6
    head_lr: float = 0.008
    scalar_lr: float = 0.04
    muon_lr: float = 0.05
    hidden_opt: str = "muon"  # the fork: muon, sgd (Nesterov 0.9), adam or adamw (wd 0.1) for the blocks' matrices
    hidden_lr: float = 0.003  # the fork: lr of sgd/adam/adamw
    mup: bool = False  # the fork: at width w, hidden Adam lr x base_width / w and logits x base_width / w
    base_width: int = 128  # the fork: the width where muP and the standard parametrization coincide
    muon_momentum: float = 0.95
    muon_momentum_warmup_steps: int = 300  # momentum ramps 0.85 -> muon_momentum
    val_loss_every: int = 125  # 0 = only at the end (never at step 0: it is ln(vocab_size) there)
    sample_tokens: int = 0  # generate this many tokens at the end
    seed: int = 0  # 0 = a fresh seed each run (logged), so repeated runs measure the spread
    compile: bool = True
    threads: int = 0  # CPU threads per process; 0 = the cores divided among local ranks
    dtype: str = "bfloat16"  # of activations and matmuls
    peak_flops: float = 0.0  # per-device peak for MFU; 0 = datasheet on known GPUs, else measured

TRACKS = {
    "8xh100_fineweb": dict(),
    # 2 CPU threads; records/cpu_shakespeare/ measures each choice (adaptive softmax, fp32, value embeds, compile)
    "cpu_shakespeare": dict(
        train_files="data/shakespeare/shakespeare_train_*.bin",
        val_files="data/shakespeare/shakespeare_val_*.bin", val_tokens=0,
        batch_size=2048, device_batch_size=2048, seq_len=128,
        num_layers=4, model_dim=128, num_heads=2, num_value_embeds=1, logit_softcap=0.0, head_cutoffs="2048,8192",
        num_iterations=470, cooldown_frac=0.5, muon_lr=0.04, val_loss_every=94,
        muon_momentum_warmup_steps=30, compile=True, dtype="float32", sample_tokens=100),
}

def parse_args(argv):
    """--track=NAME picks a preset, then every --name=value overrides one field."""
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            sys.exit(f"train_gpt.py: arguments look like --name=value, got {arg!r}")
    overrides = dict(arg[2:].split("=", 1) for arg in argv)
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
    rules = [(name, getattr(h, name) >= 1, ">= 1") for name in (
        "num_iterations", "seq_len", "num_layers", "model_dim", "vocab_size", "window_min")]
    rules += [(name, getattr(h, name) >= 0, ">= 0 (0 = off, every val token, or measured)") for name in (
        "val_tokens", "val_loss_every", "sample_tokens", "threads", "warmup_steps",
        "muon_momentum_warmup_steps", "logit_softcap", "peak_flops")]
    rules += [
        ("batch_size", h.seq_len >= 1 and h.batch_size >= h.seq_len and h.batch_size % h.seq_len == 0,
         "a positive multiple of seq_len"),
        ("device_batch_size", h.device_batch_size >= h.seq_len, ">= seq_len"),
        ("num_heads", h.num_heads >= 1 and h.model_dim % h.num_heads == 0 and h.model_dim // h.num_heads % 2 == 0,
         f"divides model_dim={h.model_dim} into heads of even size (rotary turns pairs of dimensions)"),
        ("num_value_embeds", 0 <= 2 * h.num_value_embeds <= h.num_layers, "in [0, num_layers / 2]"),
        ("head_cutoffs", len(ints) == len(cutoffs) and ints == sorted(set(ints)) and all(0 < c < h.vocab_size for c in ints)
         and h.model_dim // 4 ** len(ints) >= 1, "increasing ranks in (0, vocab_size), comma-separated; '' = full softmax"),
        ("cooldown_frac", 0 <= h.cooldown_frac <= 1, "in [0, 1]"),
        ("dtype", h.dtype in ("float32", "bfloat16"), "float32 or bfloat16")]
    for name, ok, valid in rules:
        if not ok:
            sys.exit(f"train_gpt.py: --{name}={getattr(h, name)} is out of range; valid: {valid}")

# -----------------------------------------------------------------------------
# Muon: MomentUm Orthogonalized by Newton-Schulz (Jordan et al., 2024)

def zeropower_via_newtonschulz5(G, steps=5, dtype=torch.bfloat16):
    """Approximately replace G = USV^T by UV^T. The quintic's coefficients trade exactness for speed: after 5
    steps the singular values lie in about [0.7, 1.2], which trains as well as exact orthogonalization."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    tall = G.size(0) > G.size(1)  # iterate on the wide orientation, so X @ X.T is the smaller Gram matrix
    X = (G.T if tall else G).to(dtype)
    X = X / (X.norm() + 1e-7)  # Frobenius norm >= spectral norm, so all singular values <= 1
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if tall else X

class Muon(torch.optim.Optimizer):
    """SGD-momentum with Nesterov, each 2-D update orthogonalized (compiled, Newton-Schulz's elementwise
    work fuses). Rank r orthogonalizes matrices r, r + world_size, ... of each group; all ranks gather them.
    A group is one shape up to transposition (Newton-Schulz costs the same on (3072, 768) and (768, 3072)):
    at 8 GPUs the MLPs' 24 matrices are 3 per rank; by exact shape ranks 0-3 had 4, ranks 4-7 2 (245 vs 163 GFLOP)."""

    def __init__(self, params, lr, momentum, ns_dtype=torch.bfloat16, rank=0, world_size=1, compile=False):
        params = list(params)
        shapes = sorted({tuple(sorted(p.shape)) for p in params})
        groups = [dict(params=[p for p in params if tuple(sorted(p.shape)) == s]) for s in shapes]
        super().__init__(groups, dict(lr=lr, momentum=momentum))
        self.ns_dtype, self.rank, self.world_size = ns_dtype, rank, world_size
        self.orthogonalize = torch.compile(zeropower_via_newtonschulz5) if compile else zeropower_via_newtonschulz5
        for p in params:  # allocated once, not at every step
            self.state[p]["momentum_buffer"] = torch.zeros_like(p)

    @torch.no_grad()
    def step(self):
        pending = []
        for group in self.param_groups:
            params, momentum = group["params"], group["momentum"]
            for p in params:
                self.state[p]["momentum_buffer"].lerp_(p.grad, 1 - momentum)
            for i in range(0, len(params), self.world_size):
                if i + self.rank < len(params):
                    p = params[i + self.rank]
                    g = p.grad.lerp(self.state[p]["momentum_buffer"], momentum)  # Nesterov
                    update = self.orthogonalize(g, dtype=self.ns_dtype)
                    update = update.T if p.size(0) > p.size(1) else update  # sent wide, like its group
                else:  # this rank has no matrix left in the group: send padding
                    update = torch.zeros(sorted(params[0].shape), dtype=self.ns_dtype, device=params[0].device)
                gathered, handle = [update], None
                if self.world_size > 1:
                    gathered = [torch.empty_like(update) for _ in range(self.world_size)]
                    handle = dist.all_gather(gathered, update.contiguous(), async_op=True)
                pending.append((params[i:i + self.world_size], gathered, group["lr"], handle))
        for chunk, updates, lr, handle in pending:  # gathers overlap the Newton-Schulz work above
            handle and handle.wait()
            for p, update in zip(chunk, updates):
                rows, cols = p.shape  # sqrt(rows / cols) keeps the update's RMS shape-independent
                p.add_(update.T if rows > cols else update, alpha=-lr * max(1, rows / cols) ** 0.5)

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

def document_window_mask(docs, window):
    """FlexAttention's mask_mod: query q of row b sees key k iff k <= q, both lie in the same document
    (docs[b, t] counts the documents begun up to t), and q - k < window. Packed rows need no padding."""
    def mask_mod(b, h, q, k):
        return (k <= q) & (docs[b, q] == docs[b, k]) & (q - k < window)
    return mask_mod

def attention_mask(idx, bos_id, window):
    """On GPUs a BlockMask: FlexAttention skips the 128 x 128 blocks it rules out (94% of a 64K row's causal
    blocks at a 1,792 window). On CPUs a boolean (B, 1, T, T) for SDPA: torch 2.13 has no flex backward there."""
    B, T = idx.shape
    mask_mod = document_window_mask((idx == bos_id).cumsum(1), window)
    if idx.is_cuda:
        return create_block_mask(mask_mod, B, None, T, T, device=idx.device)
    t = torch.arange(T, device=idx.device)
    return mask_mod(torch.arange(B, device=idx.device)[:, None, None, None], None, t[:, None], t)

flex_attention_compiled = torch.compile(flex_attention, dynamic=False)  # fused; compiles at its first call

class CausalSelfAttention(nn.Module):
    def __init__(self, dim, num_heads, rotary, value_embed):
        super().__init__()
        self.num_heads, self.rotary = num_heads, rotary
        self.q, self.k, self.v = (CastedLinear(dim, dim) for _ in range(3))  # separate for Muon
        self.proj = CastedLinear(dim, dim, zero_init=True)
        # how much of the value embedding joins the values: 0 at init, like the zero-init projections
        self.ve_gate = nn.Parameter(torch.tensor(0.0)) if value_embed else None

    def forward(self, x, ve, mask):
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, T, self.num_heads, -1) for lin in (self.q, self.k, self.v))
        if ve is not None:
            v = v + self.ve_gate * ve.view_as(v)
        q, k = self.rotary(norm(q)), self.rotary(norm(k))  # QK-norm keeps attention logits bounded
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        y = (F.scaled_dot_product_attention(q, k, v, attn_mask=mask) if isinstance(mask, torch.Tensor)
             else flex_attention_compiled(q, k, v, block_mask=mask))
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = CastedLinear(dim, 4 * dim)
        self.proj = CastedLinear(4 * dim, dim, zero_init=True)

    def forward(self, x):
        return self.proj(F.relu(self.fc(x)).square())  # ReLU^2 (So et al., 2021)

class Block(nn.Module):
    def __init__(self, dim, num_heads, rotary, value_embed):
        super().__init__()
        self.attn = CausalSelfAttention(dim, num_heads, rotary, value_embed)
        self.mlp = MLP(dim)
        self.lambdas = nn.Parameter(torch.tensor([1.0, 0.0]))  # learned mix of the embedding x0

    def forward(self, x, ve, x0, mask):
        x = self.lambdas[0] * x + self.lambdas[1] * x0
        x = x + self.attn(norm(x), ve, mask)
        return x + self.mlp(norm(x))

class AdaptiveSoftmax(nn.Module):
    """An exact distribution over all vocab_size ids (Grave et al., 2017). Ids are ranked by training
    frequency; ranks below cutoffs[0] get a logit each, each later band one logit there times a softmax
    of its own, from a projection div_value times narrower per band, run only for the tokens whose
    targets are in it. No cutoffs: the full softmax."""

    def __init__(self, dim, vocab_size, cutoffs, softcap, div_value=4):
        super().__init__()
        self.bounds, self.softcap = [0, *cutoffs, vocab_size], softcap
        self.output_mult = 1.0  # the fork
        self.head = CastedLinear(dim, self.bounds[1] + len(cutoffs), zero_init=True)
        self.tails = nn.ModuleList(
            nn.Sequential(CastedLinear(dim, dim // div_value ** (i + 1)),
                          CastedLinear(dim // div_value ** (i + 1), hi - lo, zero_init=True))
            for i, (lo, hi) in enumerate(zip(self.bounds[1:-1], self.bounds[2:])))
        self.register_buffer("rank_of", torch.arange(vocab_size))  # id -> frequency rank
        self.band_shares = [1.0] * len(cutoffs)  # each band's share of the training targets

    def rank_by(self, counts):
        order = np.argsort(-counts, kind="stable")
        self.rank_of[torch.from_numpy(order)] = torch.arange(len(order))
        self.band_shares = [counts[order[lo:hi]].sum() / counts.sum() for lo, hi in zip(self.bounds[1:-1], self.bounds[2:])]

    def log_softmax(self, layer, x):
        logits = layer(x).float() * self.output_mult  # the fork
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
        head, c = self.log_softmax(self.head, x), self.bounds[1]
        by_rank = torch.cat([head[:, :c]] + [head[:, c + i, None] + self.log_softmax(tail, x)
                                             for i, tail in enumerate(self.tails)], dim=1)
        return by_rank[:, self.rank_of]

class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.dtype, self.bos_id = getattr(torch, h.dtype), h.bos_id  # dtype of the activations
        self.embed = nn.Embedding(h.vocab_size, h.model_dim)
        L, n = h.num_layers, h.num_value_embeds
        rotary = Rotary(h.model_dim // h.num_heads, h.seq_len)  # one table, shared by the layers
        self.blocks = nn.ModuleList(Block(h.model_dim, h.num_heads, rotary, i < n or i >= L - n) for i in range(L))
        # U-net: the output of block i (first half) is added, weighted, into block L-1-i (second half)
        self.skip_weights = nn.Parameter(torch.ones(L // 2))
        cutoffs = [int(c) for c in h.head_cutoffs.split(",") if c]
        self.lm_head = AdaptiveSoftmax(h.model_dim, h.vocab_size, cutoffs, h.logit_softcap)  # untied from embed
        # Value embeddings (upstream's 2024-12 records, after Zhou et al.'s value residual): tables whose rows join the
        # values of the first n layers and, in the same order, the last n. Made last: other weights draw the same.
        self.value_embeds = nn.ModuleList(nn.Embedding(h.vocab_size, h.model_dim) for _ in range(n))
        self.lm_head.output_mult = h.base_width / h.model_dim if h.mup else 1.0  # the fork

    def forward(self, idx, window, targets=None):
        """The summed loss over the targets (callers divide by their token counts); without targets the
        log-probabilities of every id at every position."""
        mask = attention_mask(idx, self.bos_id, window)
        x = x0 = norm(self.embed(idx).to(self.dtype))
        skips, num_skips, L = [], len(self.skip_weights), len(self.blocks)
        ve = [embed(idx).to(self.dtype) for embed in self.value_embeds]
        ve = ve + [None] * (L - 2 * len(ve)) + ve
        for i, block in enumerate(self.blocks):
            if i >= L - num_skips:
                x = x + self.skip_weights[i - (L - num_skips)] * skips.pop()
            x = block(x, ve[i], x0, mask)
            if i < num_skips:
                skips.append(x)
        x = norm(x).flatten(0, 1)
        if targets is None:
            return self.lm_head.all_log_probs(x).view(*idx.shape, -1)
        return -self.lm_head(x, targets.reshape(-1)).sum()

# -----------------------------------------------------------------------------
# Data: llm.c shards, 256 int32 header (magic 20240520, version 1, token count) then uint16 tokens

def data_command(pattern):
    commands = dict(shakespeare="python data/shakespeare.py", fineweb="python data/cached_fineweb10B.py")
    return next((c for k, c in commands.items() if k in pattern), "python data/fineweb.py <your text files>")

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
    """batch(step): the batch_size + 1 tokens (inputs, targets shifted by one) of that step, from the shards
    in order, wrapping around. Every rank gets it all and uses its rows: the world size changes nothing."""

    def __init__(self, pattern, batch_size):
        self.files, sizes = find_shards(pattern)
        self.batch_size, self.batches = batch_size, [(n - 1) // batch_size for n in sizes]  # per shard
        if min(self.batches) < 1:
            sys.exit(f"train_gpt.py: {self.files[sizes.index(min(sizes))]} has {min(sizes)} tokens, "
                     f"fewer than one step of batch_size = {batch_size}")
        self.shard = None

    def batch(self, step):
        shard, i = 0, step % sum(self.batches)
        while i >= self.batches[shard]:
            shard, i = shard + 1, i - self.batches[shard]
        if shard != self.shard:
            self.shard, self.tokens = shard, load_tokens(self.files[shard])
        return self.tokens[i * self.batch_size:(i + 1) * self.batch_size + 1]

def load_val_tokens(pattern, val_tokens):
    """The first val_tokens + 1 tokens of the val stream (val_tokens predictions); 0 = all of it."""
    files, sizes = find_shards(pattern)
    needed = val_tokens + 1 if val_tokens else sum(sizes)
    if needed > sum(sizes) or needed < 2:
        sys.exit(f"train_gpt.py: {pattern} holds {sum(sizes)} tokens; val_tokens={val_tokens} needs "
                 f"{max(needed, 2)} (a prediction needs 2); rebuild it with: {data_command(pattern)}")
    return np.concatenate([load_tokens(f) for f in files])[:needed]

@torch.no_grad()
def evaluate(model, tokens, window, h, rank, world_size, device):
    """Mean loss over every next-token prediction in `tokens`, cut into seq_len windows (the last may be
    shorter) dealt round-robin to the ranks: independent of the world size up to float summation order."""
    n, T, B = len(tokens) - 1, h.seq_len, max(1, h.device_batch_size // h.seq_len)
    starts = list(range(0, n, T))[rank::world_size]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for i in range(0, len(starts), B):
        batch = starts[i:i + B]
        for length in sorted({min(T, n - s) for s in batch}):
            rows = np.stack([tokens[s:s + length + 1] for s in batch if min(T, n - s) == length])
            buf = torch.from_numpy(rows.astype(np.int64)).to(device)
            loss_sum += model(buf[:, :-1], window, buf[:, 1:]).double()
    if world_size > 1:
        dist.all_reduce(loss_sum)
    return loss_sum.item() / n

# -----------------------------------------------------------------------------
# Schedules, measurement, sampling

def lr_multiplier(step, h):
    """Trapezoid: linear warmup, constant, then linear cooldown to 0 (Hagele et al., 2024)."""
    cooldown_steps = max(1, int(h.cooldown_frac * h.num_iterations))
    if step < h.warmup_steps:
        return (step + 1) / h.warmup_steps
    return min(1.0, (h.num_iterations - step) / cooldown_steps)

def window_size(step, h):
    """Window warmup (upstream's 2024-11-24 record): short windows early, when the model uses little
    context anyway, and cheaper steps. Whole 128-token FlexAttention blocks, each count for an equal share."""
    lo, hi = math.ceil(h.window_min / 128), h.window_max // 128
    return 128 * max(lo, min(hi, lo + (hi - lo + 1) * step // h.num_iterations))

def muon_momentum(step, h):
    frac = min(1.0, step / h.muon_momentum_warmup_steps) if h.muon_momentum_warmup_steps else 1.0
    return (1 - frac) * 0.85 + frac * h.muon_momentum

def flops_per_token(model, h):
    """Training FLOPs per token (PaLM, appendix B): 6 per matmul weight, plus 12 * layers * dim * context for
    attention, context = the mean window (documents shorten it further; not counted). Embeddings are
    lookups; an adaptive softmax band's weights count by the share of the targets it runs for."""
    embeds = [model.embed, *model.value_embeds]
    matmul_params = sum(p.numel() for p in model.parameters() if p.ndim == 2) - sum(e.weight.numel() for e in embeds)
    for share, tail in zip(model.lm_head.band_shares, model.lm_head.tails):
        matmul_params -= (1 - share) * sum(p.numel() for p in tail.parameters())
    context = min(h.seq_len, sum(window_size(s, h) for s in range(h.num_iterations)) / h.num_iterations)
    return round(6 * matmul_params + 12 * h.num_layers * h.model_dim * context)

def keep_freed_memory():
    """glibc returns freed buffers over a threshold to the OS and page-faults them back at their next use,
    and a step frees and reallocates the same buffers each time: raising the mmap (-3) and trim (-1)
    thresholds to 1 GiB keeps them (1.24-1.30x the tokens/s on the CPU track)."""
    if platform.libc_ver()[0] == "glibc":
        for option in (-3, -1):
            ctypes.CDLL("libc.so.6").mallopt(option, 1 << 30)

def cpu_name():
    """The CPU's model and its bf16 matmul units (AVX512-BF16, AMX), from /proc/cpuinfo on Linux."""
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    name = re.search(r"^model name\s*: (.*)$", info, re.M)
    units = [f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in info]
    return f"{name[1] if name else platform.machine()}; bf16 units: {' '.join(units) or 'none'}"

def peak_flops(h, dtype, device, sync, n=2048, iters=8):
    """The per-device peak FLOP/s that MFU is taken against, and where it comes from: given, an H100
    datasheet's dense bf16 peak, or else measured on n^3 matmuls (one warm-up, one sync at the end)."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    if h.peak_flops:
        return h.peak_flops, "given"
    if "H100" in gpu:
        return (756e12, "H100 PCIe datasheet") if "PCIe" in gpu else (989e12, "H100 SXM datasheet")
    a = torch.randn(n, n, device=device, dtype=dtype)
    a @ a
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ a
    sync()
    return 2 * n ** 3 * iters / (time.perf_counter() - t0), f"measured, {n}^3 {h.dtype} matmul"

def warm_up(h, step_fn, model, optimizers):
    """With torch.compile, 3 steps before the timed loop compile the model and are then undone exactly
    (weights, optimizer state; a step's data depends on its number only): compiling is not training."""
    if not h.compile:
        return
    initial = copy.deepcopy([obj.state_dict() for obj in (model, *optimizers)])
    for step in range(3):
        step_fn(step)
    for obj, state in zip((model, *optimizers), initial):
        obj.load_state_dict(state)

@torch.no_grad()
def sample(model, h, device, num_tokens, top_k=50):
    """Top-k sampling from <|endoftext|> (a new document), decoded by data/tokenizer.py's GPT-2 encoding."""
    sys.path.insert(0, "data")
    from tokenizer import get_gpt2_encoding
    generator = torch.Generator(device).manual_seed(h.seed)
    idx = torch.tensor([[50256]], device=device)
    for _ in range(num_tokens):
        logits = model(idx[:, -h.seq_len:], h.window_max)[0, -1, :50257]  # the padded ids are never real tokens
        values, indices = logits.topk(top_k)
        choice = torch.multinomial(F.softmax(values, dim=-1), 1, generator=generator)
        idx = torch.cat([idx, indices[choice].view(1, 1)], dim=1)
    return get_gpt2_encoding().decode(idx[0, 1:].tolist())

# -----------------------------------------------------------------------------
# Training: set-up, one step, the loop, the report

def init_process(h):
    """This process's rank, world size and device; joins the process group when there are several."""
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        keep_freed_memory()
    torch.set_num_threads(h.threads or max(1, os.cpu_count() // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    if world_size > 1:
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    return rank, world_size, device

def split_batch(h, world_size):
    """A step's rows of seq_len tokens, dealt as evenly as possible to world_size ranks x grad_accum_steps
    micro-steps of <= device_batch_size tokens: slot k (micro-step k // world_size, rank k % world_size)
    gets rows bounds[k]:bounds[k + 1]. Any world size trains on the same tokens."""
    num_rows = h.batch_size // h.seq_len
    grad_accum_steps = math.ceil(num_rows / (world_size * (h.device_batch_size // h.seq_len)))
    slots = world_size * grad_accum_steps
    if num_rows < slots:
        sys.exit(f"train_gpt.py: {num_rows} rows per step cannot fill {world_size} ranks x {grad_accum_steps} "
                 f"micro-steps; raise batch_size or lower seq_len")
    return grad_accum_steps, [k * num_rows // slots for k in range(slots + 1)]

def build_optimizers(h, model, rank, world_size):
    """Muon for the blocks' matrices; Adam for the embeddings, the head and the scalars."""
    adam = torch.optim.Adam([dict(params=[model.embed.weight, *model.value_embeds.parameters()], lr=h.embed_lr),
                             dict(params=[model.lm_head.head.weight, *(t[1].weight for t in model.lm_head.tails)], lr=h.head_lr),
                             dict(params=[p for p in model.parameters() if p.ndim < 2], lr=h.scalar_lr)],
                            betas=(0.9, 0.95), fused=True)
    # the fork: the hidden matrices include the adaptive softmax's tail projections (width -> width / 4^i)
    hidden = [p for p in model.blocks.parameters() if p.ndim == 2] + [t[0].weight for t in model.lm_head.tails]
    hidden_lr = h.hidden_lr * (h.base_width / h.model_dim if h.mup else 1.0)
    muon = {"muon": lambda: Muon(hidden, lr=h.muon_lr, momentum=h.muon_momentum, ns_dtype=model.dtype,
                                 rank=rank, world_size=world_size, compile=h.compile),  # the fork: the others
            "sgd": lambda: torch.optim.SGD(hidden, lr=h.hidden_lr, momentum=0.9, nesterov=True),
            "adam": lambda: torch.optim.Adam(hidden, lr=hidden_lr, betas=(0.9, 0.95)),
            "adamw": lambda: torch.optim.AdamW(hidden, lr=h.hidden_lr, betas=(0.9, 0.95), weight_decay=0.1)}[h.hidden_opt]()
    for group in adam.param_groups + muon.param_groups:
        group["initial_lr"] = group["lr"]
    return [adam, muon]

def open_log(master, run_id):
    """log(msg): rank 0 writes msg to logs/<run_id>.txt, which starts with this source, then prints it."""
    if not master:
        return lambda msg: None
    os.makedirs("logs", exist_ok=True)
    logfile = open(f"logs/{run_id}.txt", "w", buffering=1)  # line-buffered: a crash loses nothing
    logfile.write(f"{RULER}\n{code}{RULER}\n")
    # the file first: an interrupt must not leave it behind stdout
    return lambda msg: (logfile.write(msg + "\n"), print(msg, flush=True))

def train_step(step, h, model, ddp_model, optimizers, loader, split, rank, world_size, device):
    """One optimizer step on step's batch_size tokens; returns the mean train loss and the grad norm."""
    for group in optimizers[0].param_groups + optimizers[1].param_groups:
        group["lr"] = group["initial_lr"] * lr_multiplier(step, h)
    for group in optimizers[1].param_groups if h.hidden_opt == "muon" else []:
        group["momentum"] = muon_momentum(step, h)
    (grad_accum_steps, bounds), T = split, h.seq_len
    tokens, train_loss = loader.batch(step), torch.zeros((), device=device)
    window = torch.tensor(window_size(step, h), device=device)  # a tensor: a new value does not recompile
    for micro_step in range(grad_accum_steps):
        k = micro_step * world_size + rank
        buf = torch.from_numpy(tokens[bounds[k] * T:bounds[k + 1] * T + 1].astype(np.int64))
        buf = (buf.pin_memory() if device.type == "cuda" else buf).to(device, non_blocking=True)  # async from pinned
        last_micro = micro_step == grad_accum_steps - 1
        with ddp_model.no_sync() if world_size > 1 and not last_micro else nullcontext():
            loss = ddp_model(buf[:-1].view(-1, T), window, buf[1:].view(-1, T))
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

def train_loop(h, step_fn, evaluate_fn, log, sync):
    """Returns the final val loss and the training time in ms, which counts the steps only (each between
    two syncs), not evaluation. Ctrl-C logs where it stopped and exits 130."""
    step, train_ms = 0, 0.0
    try:
        while True:
            if step == h.num_iterations or (h.val_loss_every and step > 0 and step % h.val_loss_every == 0):
                val_loss = evaluate_fn()
                log(f"step:{step}/{h.num_iterations} val_loss:{val_loss:.4f} train_time:{train_ms:.0f}ms "
                    f"step_avg:{train_ms / max(1, step):.2f}ms")
                if step == h.num_iterations:
                    return val_loss, train_ms
            sync()
            t0 = time.perf_counter()
            train_loss, grad_norm = step_fn(step)
            sync()
            train_ms, step = train_ms + 1000 * (time.perf_counter() - t0), step + 1
            log(f"step:{step}/{h.num_iterations} train_loss:{train_loss:.4f} lr:{lr_multiplier(step - 1, h) * h.muon_lr:.5f}"
                f" grad_norm:{grad_norm:.4f} train_time:{train_ms:.0f}ms step_avg:{train_ms / step:.2f}ms")
            if not math.isfinite(train_loss):
                log(f"stopped: non-finite train loss at step {step}; try a lower lr or more warmup_steps")
                sys.exit(1)
    except KeyboardInterrupt:
        log(f"interrupted after step {step} ({train_ms:.0f}ms of training); the log above is complete")
        sys.exit(130)

def report(h, model, log, master, device, val_loss, train_ms, total_peak):
    tokens_per_s = h.num_iterations * h.batch_size / (train_ms / 1000)
    mfu = flops_per_token(model, h) * tokens_per_s / total_peak
    peak_mem = (torch.cuda.max_memory_allocated() if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    log(f"peak_memory:{peak_mem // 2**20}MiB tokens_seen:{h.num_iterations * h.batch_size} "
        f"tokens_per_s:{tokens_per_s:.0f} mfu:{100 * mfu:.2f}%")
    log(f"final_val_loss:{val_loss:.4f} train_time:{train_ms:.0f}ms")
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
    h.seed = h.seed or int.from_bytes(os.urandom(4), "little") or 1
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
    step_fn = lambda step: train_step(step, h, model, ddp_model, optimizers, loader, split, rank, world_size, device)
    warm_up(h, step_fn, model, optimizers)
    peak, peak_source = peak_flops(h, model.dtype, device, sync)
    run_id = str(uuid.uuid4())
    log = open_log(master, run_id)
    log(f"python:{platform.python_version()} torch:{torch.__version__} device:{device.type} "
        f"({torch.cuda.get_device_name(device) if cuda else cpu_name()}) world_size:{world_size} "
        f"grad_accum_steps:{split[0]} threads:{torch.get_num_threads()} dtype:{h.dtype}")
    if master and cuda:
        log(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout.rstrip())
    log("hparams: " + " ".join(f"{k}={v}" for k, v in dataclasses.asdict(h).items()))
    log(f"params:{sum(p.numel() for p in model.parameters())} flops_per_token:{flops_per_token(model, h)} "
        f"peak_flops:{peak:.3g} ({peak_source}) train_shards:{len(loader.files)} val_tokens:{len(val_tokens) - 1}")
    log(f"log: logs/{run_id}.txt\n{RULER}")
    window = torch.tensor(h.window_max, device=device)
    evaluate_fn = lambda: evaluate(compiled, val_tokens, window, h, rank, world_size, device)
    val_loss, train_ms = train_loop(h, step_fn, evaluate_fn, log, sync)
    report(h, model, log, master, device, val_loss, train_ms, peak * world_size)
    if world_size > 1:
        del ddp_model  # its reducer must go before the process group, or gloo aborts at exit (torch 2.13)
        gc.collect()
        dist.destroy_process_group()
        # Even so, gloo's threads aborted 1 of 38 CPU runs at interpreter exit: the run is logged, skip that.
        sys.stdout.flush()
        os._exit(0)

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # before or after the training loop, which logs its own interruption
        print("train_gpt.py: interrupted", file=sys.stderr)
        sys.exit(130)
