"""GPT-2 speedrun trainer: one file, read top to bottom.

Defaults are the 8xH100 FineWeb track: a 124M-parameter GPT trained to 3.28 val loss on the first
10,485,760 tokens of fineweb_val_000000.bin, timed from the first to the last optimizer step.
    torchrun --standalone --nproc_per_node=8 train_gpt.py
The same file runs on 1..8 GPUs (gradient accumulation keeps 524,288 tokens per step), on several
nodes (torchrun --nnodes=...), and on a CPU-only machine: `python train_gpt.py --track=cpu_shakespeare`.
Any hyperparameter can be overridden as --name=value. Each run writes logs/<uuid>.txt, which embeds
this source, so a log alone reproduces its run.
"""
import copy
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

# -----------------------------------------------------------------------------
# Hyperparameters: the defaults are the 8xH100 FineWeb record; a track preset overrides some.


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
    peak_flops: float = 0.0  # per-device peak for MFU; 0 = datasheet on known GPUs, else measured


TRACKS = {
    "8xh100_fineweb": dict(),
    # 2 CPU threads. The 50304-wide head dominates a small model's cost. Micro-batches of 128 tokens
    # keep its logits under glibc's 32MB mmap limit, so their memory is reused, not page-faulted in
    # afresh (810 vs 624 tokens/s for 4 x 256); in eager mode the softcap's 3 extra passes over the
    # logits cost 1.4x (205 vs 146 ms per micro-step), so it is off; torch.compile gained only 1.1x
    # (918 vs 830 tokens/s) for a minute of compiling, so it is off too.
    "cpu_shakespeare": dict(
        train_files="data/shakespeare/shakespeare_train_*.bin",
        val_files="data/shakespeare/shakespeare_val_*.bin", val_tokens=0,
        batch_size=2048, device_batch_size=128, seq_len=128,
        num_layers=4, model_dim=128, num_heads=2, logit_softcap=0.0,
        num_iterations=70, cooldown_frac=0.5, val_loss_every=35,
        muon_momentum_warmup_steps=30, compile=False, sample_tokens=100),
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
    return h

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

    @torch.no_grad()
    def step(self):
        pending = []
        for group in self.param_groups:
            params, momentum = group["params"], group["momentum"]
            rows, cols = params[0].shape
            lr = group["lr"] * max(1, rows / cols) ** 0.5  # keeps the update's RMS shape-independent
            for p in params:
                self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)).lerp_(p.grad, 1 - momentum)
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


class GPT(nn.Module):
    def __init__(self, h, dtype):
        super().__init__()
        self.dtype, self.softcap = dtype, h.logit_softcap
        self.embed = nn.Embedding(h.vocab_size, h.model_dim)
        self.blocks = nn.ModuleList(Block(h.model_dim, h.num_heads, h.seq_len) for _ in range(h.num_layers))
        # U-net: the output of block i (first half) is added, weighted, into block L-1-i (second half)
        self.skip_weights = nn.Parameter(torch.ones(h.num_layers // 2))
        self.lm_head = CastedLinear(h.model_dim, h.vocab_size, zero_init=True)  # untied from embed

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
        logits = self.lm_head(norm(x)).float()
        if self.softcap:  # tanh softcap (Gemma 2)
            logits = self.softcap * torch.tanh(logits / self.softcap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)

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
    files = sorted(glob(pattern))
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
    if needed > sum(sizes):
        sys.exit(f"train_gpt.py: val_tokens={val_tokens} but {pattern} holds only {sum(sizes)} tokens")
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
    (the PaLM paper's appendix B count). The embedding is a lookup, not a matmul."""
    matmul_params = sum(p.numel() for p in model.parameters() if p.ndim == 2) - model.embed.weight.numel()
    return 6 * matmul_params + 12 * h.num_layers * h.model_dim * h.seq_len


def measure_peak_flops(device, dtype, sync):
    """Per-device dense matmul peak for MFU: the datasheet on known GPUs, else measured here."""
    if device.type == "cuda" and "H100" in torch.cuda.get_device_name(device):
        return 989e12, "H100 SXM datasheet, dense bf16"
    n = 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync()
    t0, iters = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.5:
        a @ b
        iters += 1
        sync()
    return 2 * n ** 3 * iters / (time.perf_counter() - t0), f"measured, {n}^3 {str(dtype)[6:]} matmul"


def save_checkpoint(path, model, optimizers, step, loader, train_time_ms):
    state = dict(model=model.state_dict(), optimizers=[opt.state_dict() for opt in optimizers],
                 step=step, loader=loader.state(), train_time_ms=train_time_ms,
                 rng=torch.get_rng_state(), cuda_rng=torch.cuda.get_rng_state_all())
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # atomic: a crash mid-save leaves the previous checkpoint intact


def gpt2_encoding():
    import tiktoken
    # data/tokenizer.py caches GPT-2's ranks here, for machines that can't reach tiktoken's host
    ranks = "data/cache/gpt2.tiktoken"
    if not os.path.exists(ranks):
        return tiktoken.get_encoding("gpt2")
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str
    mergeable_ranks = load_tiktoken_bpe(ranks, expected_hash="306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930")
    return tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=mergeable_ranks,
                             special_tokens={"<|endoftext|>": 50256})


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
# Training


def main():
    h = parse_args(sys.argv[1:])
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank, local_world_size = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    # bf16 activations on GPUs; a CPU without bf16 matmul units (most) runs it ~100x slower than fp32
    dtype = torch.bfloat16 if cuda else torch.float32
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.set_num_threads(h.threads or max(1, os.cpu_count() // local_world_size))
    if world_size > 1:
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    master = rank == 0

    # A step's batch_size tokens are rows of seq_len, dealt to world_size ranks x grad_accum_steps
    # micro-steps of at most device_batch_size tokens, as evenly as possible: 8 GPUs take 64 rows each
    # in 1 micro-step, 3 GPUs 56-57 rows in each of 3. Any world size trains on the same tokens.
    if h.batch_size % h.seq_len or h.device_batch_size < h.seq_len:
        sys.exit("train_gpt.py: batch_size must be a multiple of seq_len, and device_batch_size >= seq_len")
    num_rows = h.batch_size // h.seq_len
    grad_accum_steps = math.ceil(num_rows / (world_size * (h.device_batch_size // h.seq_len)))
    slots = world_size * grad_accum_steps  # slot k is micro-step k // world_size on rank k % world_size
    if num_rows < slots:
        sys.exit(f"train_gpt.py: {num_rows} rows per step cannot fill {world_size} ranks x {grad_accum_steps} "
                 f"micro-steps; raise batch_size")
    row_bounds = [k * num_rows // slots for k in range(slots + 1)]
    train_loader = DataLoader(h.train_files, h.batch_size)
    val_tokens = load_val_tokens(h.val_files, h.val_tokens)

    if h.seed == 0:
        h.seed = int.from_bytes(os.urandom(4), "little") or 1
    torch.manual_seed(h.seed)
    raw_model = GPT(h, dtype).to(device)
    model = torch.compile(raw_model) if h.compile else raw_model
    ddp_model = DDP(model, device_ids=[local_rank] if cuda else None) if world_size > 1 else model

    matrices = [p for p in raw_model.blocks.parameters() if p.ndim == 2]
    scalars = [p for p in raw_model.parameters() if p.ndim < 2]
    adam = torch.optim.Adam([dict(params=[raw_model.embed.weight], lr=h.embed_lr),
                             dict(params=[raw_model.lm_head.weight], lr=h.head_lr),
                             dict(params=scalars, lr=h.scalar_lr)], betas=(0.9, 0.95), fused=True)
    muon = Muon(matrices, lr=h.muon_lr, momentum=h.muon_momentum, ns_dtype=dtype, rank=rank, world_size=world_size)
    optimizers = [adam, muon]
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]

    start_step, train_time_ms = 0, 0.0
    if h.resume:
        ckpt = torch.load(h.resume, map_location=device, weights_only=False)
        raw_model.load_state_dict(ckpt["model"])
        for opt, state in zip(optimizers, ckpt["optimizers"]):
            opt.load_state_dict(state)
        train_loader.load_state(ckpt["loader"])
        start_step, train_time_ms = ckpt["step"], ckpt["train_time_ms"]
        torch.set_rng_state(ckpt["rng"])
    resumed_ms = train_time_ms

    run_id = str(uuid.uuid4())
    logfile = None
    if master:
        os.makedirs("logs", exist_ok=True)
        logfile = open(f"logs/{run_id}.txt", "w", buffering=1)  # line-buffered: a crash loses nothing

    def log(msg):
        if master:
            logfile.write(msg + "\n")  # the file first: an interrupt must not leave it behind stdout
            print(msg, flush=True)

    ruler = "=" * 100
    if master:
        logfile.write(f"{ruler}\n{code}{ruler}\n")
    device_name = torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine()
    log(f"python:{platform.python_version()} torch:{torch.__version__} device:{device.type} ({device_name}) "
        f"world_size:{world_size} grad_accum_steps:{grad_accum_steps} threads:{torch.get_num_threads()}")
    if master and shutil.which("nvidia-smi"):
        log(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout.rstrip())
    log("hparams: " + " ".join(f"{k}={v}" for k, v in dataclasses.asdict(h).items()))
    num_params = sum(p.numel() for p in raw_model.parameters())
    peak, peak_source = (h.peak_flops, "given") if h.peak_flops else measure_peak_flops(device, dtype, sync)
    log(f"params:{num_params} flops_per_token:{flops_per_token(raw_model, h)} "
        f"peak_flops:{peak:.3g} ({peak_source}) train_shards:{len(train_loader.files)} val_tokens:{len(val_tokens) - 1}")
    if h.resume:
        log(f"resumed from {h.resume} at step {start_step}")
    log(f"log: logs/{run_id}.txt")
    log(ruler)

    def train_step(step):
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lr_multiplier(step, h)
        for group in muon.param_groups:
            group["momentum"] = muon_momentum(step, h)
        tokens, train_loss = train_loader.next_batch(), torch.zeros((), device=device)
        for micro_step in range(grad_accum_steps):
            k = micro_step * world_size + rank
            rows = tokens[row_bounds[k] * h.seq_len:row_bounds[k + 1] * h.seq_len + 1]
            buf = torch.from_numpy(rows.astype(np.int64)).to(device, non_blocking=True)
            last_micro = micro_step == grad_accum_steps - 1
            with ddp_model.no_sync() if world_size > 1 and not last_micro else nullcontext():
                loss = ddp_model(buf[:-1].view(-1, h.seq_len), buf[1:].view(-1, h.seq_len), reduction="sum")
                # DDP averages over ranks, so this makes the gradient the mean over the step's tokens
                (loss * world_size / h.batch_size).backward()
            train_loss += loss.detach()
        if world_size > 1:
            dist.all_reduce(train_loss)
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in raw_model.parameters()])
        for opt in optimizers:
            opt.step()
        raw_model.zero_grad(set_to_none=True)
        return train_loss.item() / h.batch_size, grad_norm.item()

    if h.compile:  # compile outside the timed loop, then restore the exact initial state
        initial = copy.deepcopy(dict(model=raw_model.state_dict(), optimizers=[o.state_dict() for o in optimizers],
                                     loader=train_loader.state()))
        for step in range(3):
            train_step(start_step + step)
        raw_model.load_state_dict(initial["model"])
        for opt, state in zip(optimizers, initial["optimizers"]):
            opt.load_state_dict(state)
        train_loader.load_state(initial["loader"])

    def train_time():
        return train_time_ms + 1000 * (time.perf_counter() - t0)

    completed = start_step
    try:
        sync()
        t0 = time.perf_counter()
        for step in range(start_step, h.num_iterations + 1):
            last = step == h.num_iterations
            if last or (h.val_loss_every and step > 0 and step % h.val_loss_every == 0):
                sync()
                train_time_ms = train_time()  # evaluation is not training time
                val_loss = evaluate(model, val_tokens, h, rank, world_size, device)
                log(f"step:{step}/{h.num_iterations} val_loss:{val_loss:.4f} train_time:{train_time_ms:.0f}ms "
                    f"step_avg:{train_time_ms / max(1, step):.2f}ms")
                sync()
                t0 = time.perf_counter()
            if last:
                break
            if h.save_every and step > start_step and step % h.save_every == 0:
                train_time_ms = train_time()
                if master:
                    save_checkpoint(f"logs/{run_id}_step{step}.pt", raw_model, optimizers, step, train_loader, train_time_ms)
                t0 = time.perf_counter()
            train_loss, grad_norm = train_step(step)
            completed = step + 1
            lr, now = lr_multiplier(step, h) * h.muon_lr, train_time()
            log(f"step:{step + 1}/{h.num_iterations} train_loss:{train_loss:.4f} lr:{lr:.5f} grad_norm:{grad_norm:.4f} "
                f"train_time:{now:.0f}ms step_avg:{now / (step + 1):.2f}ms")
            if not math.isfinite(train_loss):
                log(f"stopped: non-finite train loss at step {step + 1}; try a lower lr or more warmup_steps")
                sys.exit(1)
    except KeyboardInterrupt:
        log(f"interrupted after step {completed} ({train_time():.0f}ms of training); the log above is complete")
        sys.exit(130)

    tokens_per_s = (h.num_iterations - start_step) * h.batch_size / ((train_time_ms - resumed_ms) / 1000)
    mfu = flops_per_token(raw_model, h) * tokens_per_s / (peak * world_size)
    peak_mem = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    log(f"peak_memory:{peak_mem // 2**20}MiB tokens_seen:{h.num_iterations * h.batch_size} "
        f"tokens_per_s:{tokens_per_s:.0f} mfu:{100 * mfu:.2f}%")
    log(f"final_val_loss:{val_loss:.4f} train_time:{train_time_ms:.0f}ms")
    if master and h.sample_tokens:
        try:
            log("sample: " + sample(raw_model, h, device, h.sample_tokens))
        except Exception as e:  # the run is done and logged; a missing tokenizer must not fail it
            log(f"sample skipped: no GPT-2 tokenizer ({type(e).__name__}); run: python data/tokenizer.py")
    if world_size > 1:
        del ddp_model  # its reducer must go before the process group, or gloo aborts at exit (torch 2.13)
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
