"""GPT-2 speedrun trainer, read top to bottom. Defaults: the 8xH100 FineWeb track, upstream's techniques to its 2025-01-04
record (3.4 min there; not yet run on 8 GPUs here), 1390 steps toward 3.28 val loss; --track=cpu_shakespeare: the CPU
record. Runs on 1..8 GPUs, nodes or a CPU; --name=value overrides; logs/<uuid>.txt embeds this source to reproduce a run."""
import copy, ctypes, dataclasses, gc, math, os, platform, re, resource, signal, subprocess, sys, time, uuid
from contextlib import nullcontext
from dataclasses import dataclass
from glob import glob
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.benchmark
from torch.nn.attention.flex_attention import BlockMask, flex_attention
from torch.nn.parallel import DistributedDataParallel as DDP

code = open(__file__).read()  # embedded in every log
RULER = "=" * 100  # around the source at the top of a log, and after the environment
BLOCK = 128  # FlexAttention's block size; attention windows are whole blocks

# -----------------------------------------------------------------------------
# Hyperparameters: the defaults are the 8xH100 FineWeb track's; a track preset overrides some.
@dataclass
class Hyperparameters:
    track: str = "8xh100_fineweb"
    train_files: str = "data/fineweb10B/fineweb_train_*.bin"
    val_files: str = "data/fineweb10B/fineweb_val_*.bin"
    val_tokens: int = 10485760  # fixed val set, whatever the world size; 0 = every val token
    batch_size: int = 8 * 64 * 1024  # tokens per optimizer step, over all ranks and micro-steps
    device_batch_size: int = 64 * 1024  # at most this many tokens per forward pass (fits an 80GB H100; halved on less)
    seq_len: int = 64 * 1024  # documents packed in one long row: the mask below keeps them apart
    bos_id: int = 50256  # <|endoftext|>, which starts every document
    vocab_size: int = 50304  # GPT-2's 50257, padded to a multiple of 128 for fast matmuls
    num_layers: int = 12
    model_dim: int = 768
    num_heads: int = 6
    num_value_embeds: int = 3  # tables for the first and, in reverse, the last layers' attention values
    window_min: int = 128  # the attention window grows linearly from this many tokens at step 0 ...
    window_max: int = 1792  # ... to this many at the end
    activation: str = "relu2"  # of the MLP: relu2 or relugtz (gated, 4 learned scalars per layer)
    logit_softcap: float = 15.0  # tanh cap on the logits: 15 beat 30 upstream (3.57 -> 3.4 min); 0 = off
    head_cutoffs: str = ""  # frequency-rank cutoffs of an adaptive softmax, e.g. "2048,8192"; "" = full softmax
    num_iterations: int = 1390
    warmup_steps: int = 0
    cooldown_frac: float = 0.4  # linear decay to 0 over this final fraction of the steps
    embed_lr: float = 0.6
    head_lr: float = 0.008
    scalar_lr: float = 0.04
    muon_lr: float = 0.05
    muon_momentum: float = 0.95
    muon_momentum_warmup_steps: int = 300  # momentum ramps 0.85 -> muon_momentum
    val_loss_every: int = 125  # 0 = only at the end (never at step 0: it is ln(vocab_size) there)
    seed: int = 0  # 0 = a fresh seed each run (logged), so repeated runs measure the spread
    compile: bool = True
    threads: int = 0  # CPU threads per process; 0 = the cores divided among local ranks
    dtype: str = "bfloat16"  # of activations and matmuls
    peak_flops: float = 0.0  # per-device peak for MFU; 0 = datasheet on known GPUs, else measured

TRACKS = {
    "8xh100_fineweb": dict(),
    # 2 CPU threads; records/cpu_shakespeare/ and experiments/ measure each choice (adaptive softmax to 2 layers)
    "cpu_shakespeare": dict(
        train_files="data/shakespeare/shakespeare_train_*.bin",
        val_files="data/shakespeare/shakespeare_val_*.bin", val_tokens=0,
        batch_size=4096, device_batch_size=4096, seq_len=128, activation="relugtz",
        num_layers=2, model_dim=128, num_heads=2, num_value_embeds=1, logit_softcap=0.0, head_cutoffs="2048,8192",
        num_iterations=240, cooldown_frac=0.5, muon_lr=0.02, val_loss_every=48,
        muon_momentum_warmup_steps=15, compile=True, dtype="bfloat16"),
}

def parse_args(argv):
    """--track=NAME picks a preset, then every --name=value overrides one field."""
    if bad := [arg for arg in argv if not arg.startswith("--") or "=" not in arg]:
        sys.exit(f"train_gpt.py: arguments look like --name=value, got {bad[0]!r}")
    overrides = dict(arg[2:].split("=", 1) for arg in argv)
    track = overrides.pop("track", Hyperparameters.track)
    if track not in TRACKS:
        sys.exit(f"train_gpt.py: --track={track} is unknown; tracks: {', '.join(TRACKS)}")
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
    validate(h, set(overrides))
    return h

def validate(h, overrides=()):
    """Stops with one line naming the value out of range; a rule on two blames the one overridden (presets agree)."""
    cutoffs = h.head_cutoffs.split(",") if h.head_cutoffs else []
    ints = [int(c) for c in cutoffs if c.isdigit()]
    rules = [((name,), getattr(h, name) >= 1, ">= 1") for name in ("num_iterations", "seq_len", "num_layers")]
    rules += [((name,), getattr(h, name) >= 0, ">= 0 (0 = off, every val token, or fresh)") for name in (
        "val_tokens", "val_loss_every", "threads", "muon_momentum_warmup_steps", "seed")]
    rules += [((name,), math.isfinite(getattr(h, name)) and getattr(h, name) >= 0, "a finite number >= 0") for name in (
        "embed_lr", "head_lr", "scalar_lr", "muon_lr", "logit_softcap", "peak_flops")]
    rules += [
        (("warmup_steps", "num_iterations"), 0 <= h.warmup_steps <= h.num_iterations, f"0 <= warmup_steps <= num_iterations={h.num_iterations}"),
        (("batch_size", "seq_len"), h.seq_len >= 1 and h.batch_size >= h.seq_len and h.batch_size % h.seq_len == 0, f"batch_size a multiple of seq_len={h.seq_len}"),
        (("device_batch_size", "seq_len"), h.device_batch_size >= h.seq_len, f"device_batch_size >= seq_len={h.seq_len}"),
        (("bos_id", "vocab_size"), 0 <= h.bos_id < h.vocab_size, f"0 <= bos_id={h.bos_id} < vocab_size={h.vocab_size}"),
        (("model_dim", "head_cutoffs"), h.model_dim >= 4 ** len(ints), f"model_dim >= 4^{len(ints)} (adaptive softmax band i projects to model_dim / 4^i)"),
        (("num_heads", "model_dim"), h.num_heads >= 1 and h.model_dim % h.num_heads == 0 and h.model_dim // h.num_heads % 2 == 0,
         f"num_heads divides model_dim={h.model_dim} into heads of even size (rotary turns pairs of dimensions)"),
        (("num_value_embeds", "num_layers"), 0 <= 2 * h.num_value_embeds <= h.num_layers, f"0 <= 2 x num_value_embeds <= num_layers={h.num_layers}"),
        (("window_min",), h.window_min >= BLOCK and h.window_min % BLOCK == 0, f"a positive multiple of {BLOCK} (whole attention blocks)"),
        (("window_max", "window_min"), h.window_max >= h.window_min and h.window_max % BLOCK == 0,
         f"window_max a multiple of {BLOCK}, >= window_min={h.window_min} (training grows the window to it; evaluation uses it)"),
        (("head_cutoffs", "vocab_size"), len(ints) == len(cutoffs) and ints == sorted(set(ints)) and all(0 < c < h.vocab_size for c in ints),
         f"increasing ranks in (0, vocab_size={h.vocab_size}), comma-separated; '' = full softmax"),
        (("cooldown_frac",), 0 <= h.cooldown_frac <= 1, "in [0, 1]"),
        (("muon_momentum",), 0 <= h.muon_momentum < 1, "in [0, 1)"),
        (("activation",), h.activation in ("relu2", "relugtz"), "relu2 or relugtz"),
        (("dtype",), h.dtype in ("float32", "bfloat16"), "float32 or bfloat16")]
    for names, ok, valid in rules:
        if not ok:
            name = next((n for n in names if n in overrides), names[0])
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
    """SGD-momentum with Nesterov, each 2-D update orthogonalized; rank r does matrices r, r + world_size, ... of a group
    (one shape up to transposition: at 8 GPUs the MLPs' 24 are 3 per rank, not 4 or 2), then all ranks gather them."""
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
            if handle is not None:
                handle.wait()
            for p, update in zip(chunk, updates):
                rows, cols = p.shape  # sqrt(rows / cols) keeps the update's RMS shape-independent
                p.add_(update.T if rows > cols else update, alpha=-lr * max(1, rows / cols) ** 0.5)

# -----------------------------------------------------------------------------
# Model
def norm(x):
    return F.rms_norm(x, (x.size(-1),))  # parameter-free RMSNorm

class CastedLinear(nn.Linear):  # fp32 master weights, matmul in the activations' dtype (bf16 on GPUs)
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
        cos, sin = self.cos[:, :x.size(1)].type_as(x), self.sin[:, :x.size(1)].type_as(x)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)

def document_window_mask(docs, window):
    """mask_mod: q sees k iff k <= q, one document (docs[b, t]: documents begun by t), k's block < window / BLOCK back."""
    def mask_mod(b, h, q, k):
        return (k <= q) & (docs[b, q] == docs[b, k]) & (q // BLOCK - k // BLOCK < window // BLOCK)
    return mask_mod

def ordered(blocks):
    """(B, n, n) booleans over 128 x 128 blocks as FlexAttention takes them: a count per query block, key blocks first."""
    return blocks.sum(-1, dtype=torch.int32)[:, None], torch.argsort(blocks.int(), dim=-1, descending=True, stable=True).int()[:, None]

def block_mask(docs, window):
    """From per-block document bounds (upstream from 2024-12-08), never the T x T mask: query block i sees key blocks in
    (i - window / BLOCK, i] sharing a document; those inside one, below the diagonal, are "full" (no mask_mod)."""
    B, T = docs.shape
    n = -(-T // BLOCK)
    padded = torch.cat([docs, docs[:, -1:].expand(B, n * BLOCK - T)], dim=1)
    first, last = padded[:, ::BLOCK], padded[:, BLOCK - 1::BLOCK]  # each block's first and last document
    i = torch.arange(n, device=docs.device)
    near = (i[:, None] >= i) & (i[:, None] - i < window // BLOCK)
    full = near & (i[:, None] > i) & (first[:, None, :] == last[:, :, None])  # key block's first = query block's last
    partial = near & (last[:, None, :] >= first[:, :, None]) & ~full  # key block's last reaches query block's first
    return BlockMask.from_kv_blocks(*ordered(partial), *ordered(full), BLOCK_SIZE=BLOCK,
                                    mask_mod=document_window_mask(docs, window), seq_lengths=(T, T))

def attention_mask(idx, bos_id, window):
    """On GPUs a BlockMask; on CPUs the same mask, a boolean (B, 1, T, T) (torch 2.13: no flex backward)."""
    docs = (idx == bos_id).cumsum(1)
    if idx.is_cuda:
        return block_mask(docs, window)
    t = torch.arange(idx.size(1), device=idx.device)
    return document_window_mask(docs, window)(torch.arange(idx.size(0), device=idx.device)[:, None, None, None], None, t[:, None], t)

flex_attention_compiled = torch.compile(flex_attention, dynamic=False)  # fused; compiles at its first call

class CausalSelfAttention(nn.Module):
    def __init__(self, h, rotary, value_embed):
        super().__init__()
        dim, self.num_heads, self.rotary = h.model_dim, h.num_heads, rotary
        self.q, self.k, self.v = (CastedLinear(dim, dim) for _ in range(3))  # separate for Muon
        self.proj = CastedLinear(dim, dim, zero_init=True)
        self.ve_gate = nn.Parameter(torch.tensor(0.0)) if value_embed else None  # the value embedding's share: 0 at init
    def forward(self, x, ve, mask):
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, T, self.num_heads, -1) for lin in (self.q, self.k, self.v))
        if ve is not None:
            v = v + self.ve_gate * ve.view_as(v)
        q, k = self.rotary(norm(q)), self.rotary(norm(k))  # QK-norm keeps attention logits bounded
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if isinstance(mask, BlockMask):
            y = flex_attention_compiled(q, k, v, block_mask=mask)
        else:  # CPU: written out, which inductor fuses (SDPA's CPU backward is slow in bf16); softmax in fp32, as in kernels
            y = ((q @ k.transpose(-1, -2)).float() / q.size(-1) ** 0.5).masked_fill(~mask, -math.inf).softmax(-1).type_as(v) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

class MLP(nn.Module):
    def __init__(self, h):
        super().__init__()
        gated = h.activation == "relugtz"
        hidden = 8 * h.model_dim // 3 if gated else 4 * h.model_dim  # 3 x dim x hidden = 8 x dim^2: the same parameters
        self.fc = CastedLinear(h.model_dim, 2 * hidden if gated else hidden)
        self.proj = CastedLinear(hidden, h.model_dim, zero_init=True)
        self.dprelu = nn.Parameter(torch.tensor([0.5, 0.9, 0.0, 0.0])) if gated else None  # ReLUGTz's alpha, beta, t, c
    def forward(self, x):
        if self.dprelu is None:
            return self.proj(F.relu(self.fc(x)).square())  # ReLU^2 (So et al., 2021)
        (a, b), (alpha, beta, t, c) = self.fc(x).chunk(2, dim=-1), self.dprelu
        return self.proj((beta * F.relu(a - t) - alpha * F.relu(t - a) + c) * b)

class Block(nn.Module):
    def __init__(self, h, rotary, value_embed):
        super().__init__()
        self.attn = CausalSelfAttention(h, rotary, value_embed)
        self.mlp = MLP(h)
        self.lambdas = nn.Parameter(torch.tensor([1.0, 0.0]))  # learned mix of the embedding x0
    def forward(self, x, ve, x0, mask):
        x = self.lambdas[0] * x + self.lambdas[1] * x0
        x = x + self.attn(norm(x), ve, mask)
        return x + self.mlp(norm(x))

class AdaptiveSoftmax(nn.Module):
    """Exact over all ids (Grave et al., 2017): ranks (by training frequency) below cutoffs[0] get a logit each, each later
    band one logit there times its own softmax, div_value times narrower per band, run only where targets fall in it."""
    def __init__(self, h, div_value=4):
        super().__init__()
        dim, cutoffs = h.model_dim, [int(c) for c in h.head_cutoffs.split(",") if c]
        self.bounds, self.softcap = [0, *cutoffs, h.vocab_size], h.logit_softcap
        self.head = CastedLinear(dim, self.bounds[1] + len(cutoffs), zero_init=True)
        self.tails = nn.ModuleList(
            nn.Sequential(CastedLinear(dim, dim // div_value ** (i + 1)),
                          CastedLinear(dim // div_value ** (i + 1), hi - lo, zero_init=True))
            for i, (lo, hi) in enumerate(zip(self.bounds[1:-1], self.bounds[2:])))
        self.register_buffer("rank_of", torch.arange(h.vocab_size))  # id -> frequency rank
        self.band_shares = [1.0] * len(cutoffs)  # each band's share of the training targets
    def rank_by(self, counts):
        order = np.argsort(-counts, kind="stable")
        self.rank_of[torch.from_numpy(order)] = torch.arange(len(order))
        self.band_shares = [counts[order[lo:hi]].sum() / counts.sum() for lo, hi in zip(self.bounds[1:-1], self.bounds[2:])]
    def logits(self, layer, x):  # tanh softcap (Gemma 2)
        logits = layer(x).float()
        return self.softcap * torch.tanh(logits / self.softcap) if self.softcap else logits
    def forward(self, x, targets):
        """Summed -log p(target). F.cross_entropy's backward is elementwise; log_softmax.gather's zeroes a logits-sized buffer."""
        if not self.tails:
            return F.cross_entropy(self.logits(self.head, x), targets, reduction="sum")
        ranks = self.rank_of[targets]
        head = F.log_softmax(self.logits(self.head, x), dim=-1)
        band = torch.bucketize(ranks, self.rank_of.new_tensor(self.bounds[1:-1]), right=True)  # 0 = head
        logp = head.gather(1, torch.where(band == 0, ranks, self.bounds[1] + band - 1)[:, None]).squeeze(1)
        for i, tail in enumerate(self.tails):
            rows = (band == i + 1).nonzero().squeeze(1)
            within = (ranks[rows] - self.bounds[i + 1])[:, None]
            logp = logp.index_add(0, rows, F.log_softmax(self.logits(tail, x[rows]), dim=-1).gather(1, within).squeeze(1))
        return -logp.sum()

class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.dtype, self.bos_id = getattr(torch, h.dtype), h.bos_id  # dtype of the activations
        self.embed = nn.Embedding(h.vocab_size, h.model_dim)
        L, n = h.num_layers, h.num_value_embeds
        rotary = Rotary(h.model_dim // h.num_heads, h.seq_len)  # one table, shared by the layers
        self.blocks = nn.ModuleList(Block(h, rotary, i < n or i >= L - n) for i in range(L))
        self.skip_weights = nn.Parameter(torch.ones(L // 2))  # U-net: block i's output joins block L-1-i, weighted
        self.lm_head = AdaptiveSoftmax(h)  # untied from embed
        # Value embeddings (upstream's 2024-12 records, after Zhou et al.'s value residual): tables joining the values
        # of the first n layers and, in the same order, the last n. Made last: other weights draw the same.
        self.value_embeds = nn.ModuleList(nn.Embedding(h.vocab_size, h.model_dim) for _ in range(n))
    def forward(self, idx, window, targets):  # the summed loss over the targets (callers divide)
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
        return self.lm_head(norm(x).flatten(0, 1), targets.reshape(-1))

# -----------------------------------------------------------------------------
# Data: llm.c shards, 256 int32 header (magic 20240520, version 1, token count) then uint16 tokens
def data_command(pattern):
    commands = dict(shakespeare="python data/shakespeare.py", fineweb="python data/cached_fineweb10B.py")
    return next((c for k, c in commands.items() if k in pattern), "python data/fineweb.py <your text files>")

def load_tokens(path):
    return np.fromfile(path, dtype="<u2", offset=256 * 4)

def check_shard(path, h):
    """Token count of a shard; stops the run with one line naming the file if this run cannot use it."""
    header = np.fromfile(path, dtype="<i4", count=256)
    fix = f"delete it and rebuild it with: {data_command(path)}"
    if len(header) < 256 or header[0] != 20240520 or header[1] != 1:
        sys.exit(f"train_gpt.py: {path}: not an llm.c token shard (bad magic or version); {fix}")
    expected = 256 * 4 + 2 * int(header[2])
    if os.path.getsize(path) != expected:
        sys.exit(f"train_gpt.py: {path}: header says {expected} bytes, file has {os.path.getsize(path)}: truncated or corrupt; {fix}")
    tokens = load_tokens(path)  # checked now, not at the batch or the final evaluation that would meet them
    if tokens.size and tokens.max() >= h.vocab_size:
        sys.exit(f"train_gpt.py: {path} holds token id {tokens.max()}, not below vocab_size={h.vocab_size}; "
                 f"raise --vocab_size above it, or {fix}")
    if tokens.size and not (tokens == h.bos_id).any():
        sys.exit(f"train_gpt.py: {path} holds no bos_id={h.bos_id}, which starts every document: documents would "
                 f"share attention; pass its tokenizer's --bos_id, or {fix}")
    return int(header[2])

def find_shards(pattern, h):
    files = sorted(f for f in glob(pattern) if os.path.isfile(f))
    if not files:
        sys.exit(f"train_gpt.py: no files match {pattern}; fetch or build them with: {data_command(pattern)}")
    return files, [check_shard(f, h) for f in files]

class DataLoader:
    """batch(step): its batch_size + 1 tokens, shards in order, wrapping; each rank takes its rows of the whole batch."""
    def __init__(self, h):
        self.files, sizes = find_shards(h.train_files, h)
        self.batch_size, self.batches, self.shard = h.batch_size, [(n - 1) // h.batch_size for n in sizes], None  # per shard
        if min(self.batches) < 1:
            sys.exit(f"train_gpt.py: {self.files[sizes.index(min(sizes))]} has {min(sizes)} tokens, "
                     f"fewer than one step of batch_size = {h.batch_size}")
    def batch(self, step):
        shard, i = 0, step % sum(self.batches)
        while i >= self.batches[shard]:
            shard, i = shard + 1, i - self.batches[shard]
        if shard != self.shard:
            self.shard, self.tokens = shard, load_tokens(self.files[shard])
        return self.tokens[i * self.batch_size:(i + 1) * self.batch_size + 1]

def load_val_tokens(h):
    """The first val_tokens + 1 tokens of the val stream (val_tokens predictions); 0 = all of it."""
    files, sizes = find_shards(h.val_files, h)
    if sum(sizes) < 2:
        sys.exit(f"train_gpt.py: {h.val_files} holds {sum(sizes)} tokens; a prediction needs 2; "
                 f"rebuild it with: {data_command(h.val_files)}")
    if h.val_tokens >= sum(sizes):
        sys.exit(f"train_gpt.py: --val_tokens={h.val_tokens} is out of range; valid: at most {sum(sizes) - 1} "
                 f"(the predictions in {h.val_files}), or 0 = all of them")
    return np.concatenate([load_tokens(f) for f in files])[:h.val_tokens + 1 if h.val_tokens else None]

@torch.no_grad()
def evaluate(run, tokens):
    """Mean loss over every prediction in `tokens`, in seq_len windows (the last may be shorter) dealt to the ranks."""
    h = run.h
    n, T, B = len(tokens) - 1, h.seq_len, max(1, h.device_batch_size // h.seq_len)
    starts = list(range(0, n, T))[run.rank::run.world_size]
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    for i in range(0, len(starts), B):
        batch = starts[i:i + B]
        for length in sorted({min(T, n - s) for s in batch}):
            rows = np.stack([tokens[s:s + length + 1] for s in batch if min(T, n - s) == length])
            buf = torch.from_numpy(rows.astype(np.int64)).to(run.device)
            loss_sum += run.compiled(buf[:, :-1], run.windows[h.window_max], buf[:, 1:]).double()
    if run.world_size > 1:
        dist.all_reduce(loss_sum)
    return loss_sum.item() / n

# -----------------------------------------------------------------------------
# Schedules and measurement
def lr_multiplier(step, h):
    """Trapezoid: linear warmup, constant, then linear cooldown to 0 (Hagele et al., 2024)."""
    if step < h.warmup_steps:
        return (step + 1) / h.warmup_steps
    return min(1.0, (h.num_iterations - step) / max(1, int(h.cooldown_frac * h.num_iterations)))

def window_size(step, h):
    """Window warmup (upstream's 2024-11-24 record): cheap windows early, when little context is used; whole blocks."""
    lo, hi = h.window_min // BLOCK, h.window_max // BLOCK
    return BLOCK * min(hi, lo + (hi - lo + 1) * step // h.num_iterations)

def flops_per_token(model, h):
    """Training FLOPs per token (PaLM, appendix B): 6 per matmul weight (a softmax band by its share of targets), plus
    12 * layers * dim * the mean window for attention (document cuts not counted). Embeddings are lookups."""
    matmul_params = sum(p.numel() for p in model.parameters() if p.ndim == 2) - sum(e.weight.numel() for e in [model.embed, *model.value_embeds])
    for share, tail in zip(model.lm_head.band_shares, model.lm_head.tails):
        matmul_params -= (1 - share) * sum(p.numel() for p in tail.parameters())
    context = min(h.seq_len, sum(window_size(s, h) for s in range(h.num_iterations)) / h.num_iterations)
    return round(6 * matmul_params + 12 * h.num_layers * h.model_dim * context)

def keep_freed_memory():
    """glibc returns big freed buffers to the OS and page-faults them back at their next use, every step: raising the
    mmap (-3) and trim (-1) thresholds to 1 GiB keeps them (1.24-1.30x the tokens/s on the CPU track)."""
    if platform.libc_ver()[0] == "glibc":
        for option in (-3, -1):
            ctypes.CDLL("libc.so.6").mallopt(option, 1 << 30)

def cpu_name():  # the CPU's model and its bf16 matmul units (AVX512-BF16, AMX), from /proc/cpuinfo on Linux
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    name = re.search(r"^model name\s*: (.*)$", info, re.M)
    units = " ".join(f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in info) or "none"
    return f"{name[1] if name else platform.machine()}; bf16 units: {units}"

# Datasheet dense bf16 peaks (no sparsity), by a part of the GPU's name; the first that matches wins
PEAK_FLOPS = {"H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12,
              "L40S": 362e12, "RTX 4090": 165e12}

def peak_flops(h, dtype, device, n=2048, iters=8):
    """Per-device peak FLOP/s for MFU and its source: given, a datasheet, or else measured (reads below a datasheet)."""
    if h.peak_flops:
        return h.peak_flops, "given"
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    if name := next((name for name in PEAK_FLOPS if name in gpu), None):
        return PEAK_FLOPS[name], f"{name} datasheet"
    timer = torch.utils.benchmark.Timer("a @ a", globals=dict(a=torch.randn(n, n, device=device, dtype=dtype)),
                                        num_threads=torch.get_num_threads())  # warms up; syncs a GPU
    return 2 * n ** 3 / timer.timeit(iters).mean, f"measured, {n}^3 {h.dtype} matmul"

def memory_estimate(h, num_params, tokens):
    """Peak bytes of a step, `tokens` per forward: 16 per parameter (fp32 weight, grad, state), 32 per token, layer
    and model dim (bf16 activations), 4 per token and vocab id (bf16 logits and their gradient)."""
    return 16 * num_params + tokens * (32 * h.num_layers * h.model_dim + 4 * h.vocab_size)

def fit_to_memory(h, num_params, gpu_bytes):
    """(seq_len, device_batch_size) halved, rows per forward first, to fit 80% of gpu_bytes; steps keep batch_size."""
    seq_len, tokens = h.seq_len, h.device_batch_size
    while memory_estimate(h, num_params, tokens) > 0.8 * gpu_bytes and tokens >= 2 * max(BLOCK, h.window_max):
        tokens //= 2
        seq_len = min(seq_len, tokens)
    return seq_len, tokens

# -----------------------------------------------------------------------------
# Training: set-up, one step, the loop, the report
def init_process(h):
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    torch.cuda.set_device(device) if cuda else keep_freed_memory()
    torch.set_num_threads(h.threads or max(1, os.cpu_count() // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    if world_size > 1:
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    return rank, world_size, device

def split_batch(h, world_size):
    """A step's rows, dealt evenly to world_size x grad_accum_steps slots of <= device_batch_size tokens: slot k
    (micro-step k // world_size, rank k % world_size) gets rows bounds[k]:bounds[k + 1]."""
    num_rows = h.batch_size // h.seq_len
    grad_accum_steps = math.ceil(num_rows / (world_size * (h.device_batch_size // h.seq_len)))
    slots = world_size * grad_accum_steps
    if num_rows < slots:
        sys.exit(f"train_gpt.py: {num_rows} rows per step cannot fill {world_size} ranks x {grad_accum_steps} "
                 f"micro-steps; raise batch_size or lower seq_len")
    return grad_accum_steps, [k * num_rows // slots for k in range(slots + 1)]

def build_optimizers(h, model, rank, world_size):
    """By name: Muon for the blocks' matrices; Adam for the embeddings, the head (and its tails) and the scalars."""
    groups = [dict(name="embed", params=[model.embed.weight, *model.value_embeds.parameters()], lr=h.embed_lr),
              dict(name="head", params=list(model.lm_head.head.parameters()), lr=h.head_lr),
              dict(name="tails", params=list(model.lm_head.tails.parameters()), lr=h.head_lr),
              dict(name="scalars", params=[p for p in model.parameters() if p.ndim < 2], lr=h.scalar_lr)]
    adam = torch.optim.Adam([g for g in groups if g["params"]], betas=(0.9, 0.95), fused=True)
    muon = Muon([p for p in model.blocks.parameters() if p.ndim == 2], lr=h.muon_lr, momentum=h.muon_momentum,
                ns_dtype=model.dtype, rank=rank, world_size=world_size, compile=h.compile)
    for group in adam.param_groups + muon.param_groups:
        group["initial_lr"] = group["lr"]
    return dict(adam=adam, muon=muon)

def set_schedules(optimizers, step, h):
    """The step's values: every lr follows the trapezoid; Muon's momentum warms up from 0.85."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * lr_multiplier(step, h)
    frac = min(1.0, step / h.muon_momentum_warmup_steps) if h.muon_momentum_warmup_steps else 1.0
    for group in optimizers["muon"].param_groups:
        group["momentum"] = (1 - frac) * 0.85 + frac * h.muon_momentum

class Log:
    """log(msg): rank 0 writes msg to logs/<run_id>.txt (which starts with this source), line-buffered, then prints it."""
    def __init__(self, master, run_id):
        self.path, self.master, self.file = f"logs/{run_id}.txt", master, None
        self(f"{RULER}\n{code}{RULER}", echo=False)
    def __call__(self, msg, echo=True):
        if not self.master:
            return
        try:
            if self.file is None:  # the first line creates the file
                os.makedirs("logs", exist_ok=True)
                self.file = open(self.path, "w", buffering=1)
            self.file.write(msg + "\n")
        except OSError as e:
            sys.exit(f"train_gpt.py: cannot write {self.path}: {e.strerror}; run where logs/ can be written")
        if echo:
            print(msg, flush=True)

def warm_up(run):
    """With torch.compile, 3 steps compile before the timed loop, then are undone: compiling is not training."""
    if not run.h.compile:
        return
    objs = [run.model, *run.optimizers.values()]
    initial = copy.deepcopy([obj.state_dict() for obj in objs])
    for step in range(3):
        train_step(run, step)
    for obj, state in zip(objs, initial):
        obj.load_state_dict(state)

def train_step(run, step):
    """One optimizer step: [summed train loss, grad norm] on the host and, on CUDA, the event after which they are there."""
    h, T = run.h, run.h.seq_len
    set_schedules(run.optimizers, step, h)
    tokens, train_loss = run.loader.batch(step), torch.zeros((), device=run.device)
    for micro_step in range(run.grad_accum_steps):
        k = micro_step * run.world_size + run.rank
        buf = torch.from_numpy(tokens[run.bounds[k] * T:run.bounds[k + 1] * T + 1].astype(np.int64))
        buf = (buf.pin_memory() if run.device.type == "cuda" else buf).to(run.device, non_blocking=True)  # pinned: async
        with run.ddp_model.no_sync() if run.world_size > 1 and micro_step < run.grad_accum_steps - 1 else nullcontext():
            loss = run.ddp_model(buf[:-1].view(-1, T), run.windows[window_size(step, h)], buf[1:].view(-1, T))
            # DDP averages over ranks, so this makes the gradient the mean over the step's tokens
            (loss * run.world_size / h.batch_size).backward()
        train_loss += loss.detach()
    if run.world_size > 1:
        dist.all_reduce(train_loss)
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in run.model.parameters()])
    for opt in run.optimizers.values():
        opt.step()
    run.model.zero_grad(set_to_none=True)
    stats, done = torch.stack([train_loss, grad_norm]), None
    if run.device.type == "cuda":
        stats, done = stats.to("cpu", non_blocking=True), torch.cuda.Event()
        done.record()
    return stats, done

def train_loop(run, val_tokens, log):
    """Final val loss and training ms: per stretch between evaluations, from a sync before it to a sync after. On CUDA
    step N is logged once step N + 1 is queued, so the GPU never waits for the host. Ctrl-C or SIGTERM logs the stop."""
    h, step, train_ms = run.h, 0, 0.0
    logged, pending = (0, 0.0), []  # the last step logged and its time; steps queued, not logged yet

    def log_step(step, stats, done, ms=None):  # ms: when it finished, if known
        nonlocal logged
        if done is not None:
            done.synchronize()  # waits for this step's work only: the GPU goes on with the next
        ms = train_ms + 1000 * (time.perf_counter() - t0) if ms is None else ms
        train_loss, grad_norm = stats[0].item() / h.batch_size, stats[1].item()
        log(f"step:{step}/{h.num_iterations} train_loss:{train_loss:.4f} lr:{lr_multiplier(step - 1, h) * h.muon_lr:.5f}"
            f" grad_norm:{grad_norm:.4f} train_time:{ms:.0f}ms step_avg:{ms / step:.2f}ms")
        logged = (step, ms)
        if not math.isfinite(train_loss):
            log(f"stopped: non-finite train loss at step {step}; try a lower lr or more warmup_steps")
            sys.exit(1)

    try:
        while True:
            if step == h.num_iterations or (h.val_loss_every and step > 0 and step % h.val_loss_every == 0):
                val_loss = evaluate(run, val_tokens)
                log(f"step:{step}/{h.num_iterations} val_loss:{val_loss:.4f} train_time:{train_ms:.0f}ms "
                    f"step_avg:{train_ms / max(1, step):.2f}ms")
                if step == h.num_iterations:
                    return val_loss, train_ms
            every = h.val_loss_every or h.num_iterations
            end = min(h.num_iterations, (step // every + 1) * every)
            run.sync()
            t0 = time.perf_counter()
            while step < end:
                pending.append((step + 1, *train_step(run, step)))
                step += 1
                if len(pending) > 1 or pending[0][2] is None:  # CPU: at once; CUDA: one step later
                    log_step(*pending.pop(0))
            run.sync()
            elapsed = train_ms + 1000 * (time.perf_counter() - t0)
            for entry in pending:
                log_step(*entry, elapsed)
            train_ms, pending = elapsed, []
    except KeyboardInterrupt as e:
        log(f"interrupted after step {logged[0]} ({logged[1]:.0f}ms of training); the log above is complete")
        sys.exit(128 + (e.args[0] if e.args else signal.SIGINT))

def report(run, log, val_loss, train_ms, total_peak):
    h = run.h
    tokens_per_s = h.num_iterations * h.batch_size / (train_ms / 1000)
    mfu = flops_per_token(run.model, h) * tokens_per_s / total_peak
    peak_mem = torch.cuda.max_memory_allocated() if run.device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    log(f"peak_memory:{peak_mem // 2**20}MiB tokens_seen:{h.num_iterations * h.batch_size} "
        f"tokens_per_s:{tokens_per_s:.0f} mfu:{100 * mfu:.2f}%")
    log(f"final_val_loss:{val_loss:.4f} train_time:{train_ms:.0f}ms")

def main():
    h = parse_args(sys.argv[1:])
    log = Log(os.environ.get("RANK", "0") == "0", uuid.uuid4())  # first: a log that cannot be written wastes nothing
    rank, world_size, device = init_process(h)
    cuda = device.type == "cuda"
    loader, val_tokens = DataLoader(h), load_val_tokens(h)
    h.seed = h.seed or int.from_bytes(os.urandom(4), "little") or 1
    torch.manual_seed(h.seed)
    model = GPT(h)
    num_params, fitted = sum(p.numel() for p in model.parameters()), None
    if cuda and (fit := fit_to_memory(h, num_params, torch.cuda.get_device_properties(device).total_memory)) != (h.seq_len, h.device_batch_size):
        fitted = (f"memory: device_batch_size={h.device_batch_size} needs ~{memory_estimate(h, num_params, h.device_batch_size) / 2**30:.1f} GiB, "
                  f"over 80% of this GPU; (seq_len, device_batch_size) = {fit} needs ~{memory_estimate(h, num_params, fit[1]) / 2**30:.1f} GiB")
        h.seq_len, h.device_batch_size = fit
        validate(h)
    grad_accum_steps, bounds = split_batch(h, world_size)
    if model.lm_head.tails:
        model.lm_head.rank_by(sum(np.bincount(load_tokens(f), minlength=h.vocab_size) for f in loader.files))
    model = model.to(device)
    compiled = torch.compile(model) if h.compile else model
    ddp_model = DDP(compiled, device_ids=[device.index] if cuda else None, forward_sync_buffers=False,  # buffers agree
                    gradient_as_bucket_view=True) if world_size > 1 else compiled  # gradients live in DDP's buckets
    # What a step and an evaluation read; a window tensor per size: a new value neither recompiles nor copies to the GPU
    run = SimpleNamespace(h=h, model=model, compiled=compiled, ddp_model=ddp_model, loader=loader, rank=rank,
                          world_size=world_size, device=device, grad_accum_steps=grad_accum_steps, bounds=bounds,
                          optimizers=build_optimizers(h, model, rank, world_size), sync=torch.cuda.synchronize if cuda else lambda: None,
                          windows={w: torch.tensor(w, device=device) for w in range(BLOCK, h.window_max + 1, BLOCK)})
    warm_up(run)
    peak, peak_source = peak_flops(h, model.dtype, device)
    log(f"python:{platform.python_version()} torch:{torch.__version__} device:{device.type} "
        f"({torch.cuda.get_device_name(device) if cuda else cpu_name()}) world_size:{world_size} "
        f"grad_accum_steps:{grad_accum_steps} threads:{torch.get_num_threads()} dtype:{h.dtype}")
    if rank == 0 and cuda:
        log(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout.rstrip())
    if fitted:
        log(fitted)
    log("hparams: " + " ".join(f"{k}={v}" for k, v in dataclasses.asdict(h).items()))
    log(f"params:{num_params} flops_per_token:{flops_per_token(model, h)} peak_flops:{peak:.3g} ({peak_source}) "
        f"train_shards:{len(loader.files)} val_tokens:{len(val_tokens) - 1}")
    log(f"log: {log.path}\n{RULER}")
    val_loss, train_ms = train_loop(run, val_tokens, log)
    report(run, log, val_loss, train_ms, peak * world_size)
    if world_size > 1:
        del run, ddp_model  # the reducer must go before the process group, or gloo aborts at exit (torch 2.13)
        gc.collect()
        dist.destroy_process_group()
        sys.stdout.flush()  # even so, gloo's threads aborted 1 of 38 CPU runs at exit: the run is logged, skip that
        os._exit(0)

def on_signal(signum, frame):  # SIGTERM (what schedulers and `timeout` send) stops a run as Ctrl-C does
    raise KeyboardInterrupt(signum)

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    try:
        main()
    except KeyboardInterrupt as e:  # outside the training loop, which logs its own
        sys.stderr.write("train_gpt.py: interrupted\n")
        os._exit(128 + (e.args[0] if e.args else signal.SIGINT))
