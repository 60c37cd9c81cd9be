"""Does train_gpt.py's FineWeb configuration compute what an upstream record's script computed?

    python tools/upstream_check.py UPSTREAM_LOG

UPSTREAM_LOG is a record log of the public modded-nanogpt speedrun (fetched by you: this repository
stores none of its code), whose top is the script that ran. On a CPU, both models are built at a
reduced size that keeps every code path (all 12 layers, so the value-embedding layers, the U-net
skips and the layer without attention; width 128, 2 heads of 64, the full 50,304-id head; one row of
1,024 tokens with 5 documents and a window of 3 blocks, below the row), with the same weights,
mapped by name and shape. Compared, in this order: the hyperparameters both scripts name; each
parameter's shape, dtype and initialization; the forward loss; every parameter's gradient; one step
of the optimizers (Muon and Adam) from the same weights and gradients: the weights after it; and the
schedules (lr, Muon's momentum, the attention window) over every step. Attention runs dense on both
sides (torch 2.13 has no FlexAttention backward on a CPU): upstream's BlockMask is expanded to a
(T, T) boolean mask, ours is the one the CPU path builds; both then do what the CPU path does.

Prints a table of the largest absolute and relative difference per comparison, then one line: exit 0
when everything agrees within the tolerances below, exit 1 naming the first disagreement.
"""

import argparse
import ast
import contextlib
import os
import re
import sys

import torch
from layout import ROOT, load_script

train_gpt = load_script(os.path.join(ROOT, "train_gpt.py"), "train_gpt")

# Tolerances, relative to the largest absolute value of ours. Both sides run the same operations in
# bf16 (upstream casts to bf16 in its forward and its Newton-Schulz) on the same kernels: where the
# function is the same, the differences are those of sums taken in another order (~1e-7 in fp32; a
# bf16 rounding that flips moves an element by 0.4%). Measured here (AMD EPYC, torch 2.13): against
# the 2025-01-04 log every loss, gradient and weight difference is 0. One change injected into this
# script's own function (tests/test_upstream_check.py) moves the loss by 0.29 relative (softcap 30),
# 1.3e-4 (full-width rotary), or a weight after two steps by 4% of its change (momentum warmup).
LOSS_RTOL = 1e-6  # the forward loss, an fp32 scalar: sums in another order move it ~1e-7
GRAD_RTOL = 2e-2  # a gradient tensor: a few bf16 roundings may differ on its largest elements
STEP_RTOL = 2e-2  # the weights' change in one optimizer step, from identical weights and gradients
SCHEDULE_ATOL = 1e-9  # lr multipliers, momentum, windows: exact up to float formatting
WIDTH, HEADS, LENGTH, WINDOW_BLOCKS = 128, 2, 1024, 3
BOS = 50256
NAMES = [  # upstream's parameter names -> ours; a name that matches none stays as it is
    (r"\.attn\.c_(q|k|v)\.", r".attn.\1."),
    (r"\.attn\.c_proj\.", ".attn.proj."),
    (r"\.mlp\.c_fc\.", ".mlp.fc."),
    (r"\.mlp\.c_proj\.", ".mlp.proj."),
    (r"^value_embeds\.embed\.", "value_embeds."),
    (r"^lm_head\.weight$", "lm_head.head.weight"),
]
HPARAMS = dict(  # upstream's Hyperparameters fields -> ours
    batch_size="batch_size",
    max_device_batch_size="device_batch_size",
    sequence_length="seq_len",
    num_iterations="num_iterations",
    cooldown_frac="cooldown_frac",
    val_tokens="val_tokens",
    val_loss_every="val_loss_every",
)


class Disagreement(Exception):
    pass


def source_of(path):
    """The script at the top of an upstream log: everything before its first ruler line."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(
            f"upstream_check: cannot read {path}: {e}; pass the path of an upstream record log"
        )
    source = text.split("\n" + "=" * 100 + "\n")[0]
    if "class GPT" not in source:
        sys.exit(f"upstream_check: {path}: no script with a GPT class at its top; not a record log")
    return source


class ForCPU(ast.NodeTransformer):
    """Upstream's script, made to run here: 'cuda' -> 'cpu', torch.compile and DDP and .cuda() as
    the identity, and the model's width and heads reduced where its constructor is called."""

    def visit_Constant(self, node):
        if node.value == "cuda":
            return ast.copy_location(ast.Constant("cpu"), node)
        return node

    def visit_FunctionDef(self, node):
        node.decorator_list = [d for d in node.decorator_list if ast.unparse(d) != "torch.compile"]
        return self.generic_visit(node)

    def visit_ImportFrom(self, node):  # the shims below stand in for these
        node.names = [a for a in node.names if a.name != "flex_attention"]
        return node if node.names else None

    def visit_Import(self, node):
        node.names = [a for a in node.names if a.asname != "dist"]
        return node if node.names else None

    def visit_Call(self, node):
        self.generic_visit(node)
        func = ast.unparse(node.func)
        if func in ("torch.compile", "DDP") and node.args:
            return node.args[0]
        if isinstance(node.func, ast.Attribute) and node.func.attr == "cuda" and not node.args:
            return node.func.value
        for keyword in node.keywords:
            if keyword.arg == "model_dim":
                keyword.value = ast.Constant(WIDTH)
            if keyword.arg == "num_heads":
                keyword.value = ast.Constant(HEADS)
        return node


def dense_mask(block_mask, T):
    """A BlockMask's (T, T) booleans: full blocks, and partial blocks where its mask_mod allows."""

    def blocks(counts, indices):
        n = indices.size(-1)
        valid = torch.arange(n) < counts[..., None]
        dense = torch.zeros(*indices.shape[:-1], n, dtype=torch.bool)
        return dense.scatter(-1, indices.long(), valid)[0, 0]

    full = blocks(block_mask.full_kv_num_blocks, block_mask.full_kv_indices)
    partial = blocks(block_mask.kv_num_blocks, block_mask.kv_indices)
    t = torch.arange(T)
    q, k = t[:, None], t[None, :]
    b = torch.zeros((), dtype=torch.long)
    allowed = block_mask.mask_mod(b, b, q, k)
    return full[q // 128, k // 128] | (partial[q // 128, k // 128] & allowed)


def flex_attention(q, k, v, block_mask):
    """What train_gpt.py's CPU path computes, over the BlockMask's mask."""
    mask = dense_mask(block_mask, q.size(-2))
    scores = (q @ k.transpose(-1, -2)).float() / q.size(-1) ** 0.5
    return scores.masked_fill(~mask, -float("inf")).softmax(-1).type_as(v) @ v


class OneRank:
    """torch.distributed for a world of one: all_gather copies, all_reduce keeps."""

    class Done:
        def wait(self):
            pass

    def all_gather(self, outputs, tensor, async_op=False):
        outputs[0].copy_(tensor.view_as(outputs[0]))
        return self.Done()

    def all_reduce(self, tensor, op=None, async_op=False):
        return self.Done()

    def __getattr__(self, name):  # barrier, init_process_group, ...: nothing to do
        return lambda *args, **kwargs: None


def load_upstream(source):
    """Upstream's definitions and the set-up of its main section (model, optimizers, schedules),
    each top-level statement run in order; those that need a GPU, files or other ranks are
    skipped. Returns its namespace and the statements of its training loop."""
    tree = ast.fix_missing_locations(ForCPU().visit(ast.parse(source)))
    for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1").items():
        os.environ.setdefault(key, value)
    ns = dict(__name__="upstream", flex_attention=flex_attention, dist=OneRank())
    loop = []
    for node in tree.body:
        if isinstance(node, ast.For) and ast.unparse(node.target) == "step":
            loop = node.body
            continue
        runs = (
            ast.Import,
            ast.ImportFrom,
            ast.FunctionDef,
            ast.ClassDef,
            ast.Assign,
            ast.AnnAssign,
        )
        if isinstance(node, ast.If) and "master_process" in ast.unparse(node.test):
            continue  # logging set-up: files and prints
        if not isinstance(node, (*runs, ast.If, ast.For)):
            continue
        # data loaders, nvidia-smi, process groups fail here: they are not part of the function
        with contextlib.suppress(Exception):
            exec(compile(ast.Module([node], []), "upstream", "exec"), ns)
    return ns, loop


def momentum_of(ns, loop, muon, step):
    """Muon's momentum at a step, by upstream's own statements in its training loop."""
    statements = []
    for node in loop:
        text = ast.unparse(node)
        if re.match(r"frac\s*=", text) or ("param_groups" in text and "'momentum'" in text):
            statements.append(node)
    if not statements:
        raise Disagreement("momentum: upstream's loop sets no Muon momentum this tool can find")
    exec(compile(ast.Module(statements, []), "upstream", "exec"), ns | dict(step=step))
    return muon.param_groups[0]["momentum"]


def tokens():
    g = torch.Generator().manual_seed(0)
    stream = torch.randint(0, BOS, (LENGTH + 1,), generator=g)
    stream[[0, 100, 101, 500, 900]] = BOS  # 5 documents, one of a single token
    return stream


def ours_model():
    h = train_gpt.parse_args(
        [f"--model_dim={WIDTH}", f"--num_heads={HEADS}", f"--seq_len={LENGTH}", "--compile=false"]
    )
    torch.manual_seed(0)
    return h, train_gpt.GPT(h)


def mapped(upstream, ours):
    """(name, upstream's parameter, ours) for every parameter, or the first that has no partner."""
    theirs = dict(upstream.named_parameters())
    mine = dict(ours.named_parameters())
    pairs = []
    for name, p in theirs.items():
        our_name = name
        for pattern, replacement in NAMES:
            our_name = re.sub(pattern, replacement, our_name)
        if our_name not in mine:
            raise Disagreement(f"parameters: upstream's {name} has no counterpart here")
        pairs.append((our_name, p, mine.pop(our_name)))
    if mine:
        raise Disagreement(f"parameters: {next(iter(mine))} here has no counterpart upstream")
    return pairs


class Table:
    """One row per kind of comparison: how many, the largest differences, the tolerance; and every
    comparison that is out of it, in the order met."""

    def __init__(self):
        self.rows = {}
        self.failures = []

    def add(self, kind, what, diff, scale, tolerance):
        rel = diff
        if scale:
            rel = diff / scale
        row = self.rows.setdefault(kind, dict(n=0, diff=0.0, rel=0.0, tolerance=tolerance))
        row["n"] += 1
        row["diff"] = max(row["diff"], diff)
        row["rel"] = max(row["rel"], rel)
        if not rel <= tolerance:
            self.failures.append(
                f"{what}: differs by {diff:.3g} ({rel:.3g} relative; allowed {tolerance:g})"
            )

    def print(self):
        columns = f"{'n':>4} {'max abs diff':>13} {'max rel diff':>13} {'tolerance':>10}"
        print(f"{'comparison':<40} {columns}")
        for kind, row in self.rows.items():
            diff, rel, tolerance = row["diff"], row["rel"], row["tolerance"]
            print(f"{kind:<40} {row['n']:>4} {diff:>13.3g} {rel:>13.3g} {tolerance:>10g}")


def compare_hparams(ns, table):
    """Upstream's Hyperparameters against this script's FineWeb defaults."""
    h = train_gpt.parse_args([])
    args = ns.get("args")
    if args is None:
        raise Disagreement("hyperparameters: upstream's script defines no args")
    for theirs, mine in HPARAMS.items():
        if hasattr(args, theirs):
            value, ours = getattr(args, theirs), getattr(h, mine)
            what = f"hyperparameter {mine} (upstream's {theirs}={value}, ours {ours})"
            table.add("hyperparameters", what, abs(value - ours), abs(ours), 0.0)


def compare_parameters(pairs, table):
    for name, theirs, mine in pairs:
        if theirs.shape != mine.shape:
            shapes = f"{tuple(theirs.shape)} upstream, {tuple(mine.shape)} here"
            raise Disagreement(f"parameter {name}: {shapes}")
        dtypes = f"parameter {name}'s dtype ({theirs.dtype} upstream, {mine.dtype} here)"
        table.add("parameter dtypes", dtypes, float(theirs.dtype != mine.dtype), 1.0, 0.0)
        constant = [p for p in (theirs, mine) if p.numel() and (p == p.flatten()[0]).all()]
        if constant or mine.numel() < 64:  # a fixed init (zeros, ones, 0.5s): the same numbers
            diff = (theirs.float() - mine.float()).abs().max().item()
            table.add("initialization, fixed values", f"init of {name}", diff, 1.0, 0.0)
        else:  # a random init: the same spread
            ratio = theirs.float().std().item() / mine.float().std().item()
            kind = "initialization, random (std ratio - 1)"
            table.add(kind, f"init spread of {name}", abs(ratio - 1), 1.0, 0.1)


def forward_and_backward(ns, upstream, ours, h, table, pairs):
    stream = tokens()
    with torch.no_grad():
        for name, theirs, mine in pairs:  # zero-init matrices would hide what comes before them
            if mine.ndim == 2 and not mine.any():
                std = 0.02
                if name == "lm_head.head.weight":  # logits of std ~8, where a softcap acts
                    std = 8 / WIDTH**0.5
                mine.normal_(std=std, generator=torch.Generator().manual_seed(len(name)))
            theirs.copy_(mine)
    window = torch.tensor(WINDOW_BLOCKS * 128)
    mine = ours(stream[None, :-1], window, stream[None, 1:]) / LENGTH
    blocks = torch.tensor(WINDOW_BLOCKS, dtype=torch.int32)
    try:
        theirs = upstream(stream[:-1].int(), stream[1:], blocks)
    except Exception as e:
        why = f"{type(e).__name__}: {e}"
        raise Disagreement(f"forward: upstream's model does not run here ({why})") from e
    diff = abs(theirs.item() - mine.item())
    table.add("forward loss", "forward loss", diff, abs(mine.item()), LOSS_RTOL)
    mine.backward()
    theirs.backward()
    for name, theirs, mine in pairs:
        if (theirs.grad is None) != (mine.grad is None):
            raise Disagreement(f"gradient {name}: None on one side only")
        if mine.grad is not None:
            diff = (theirs.grad.float() - mine.grad.float()).abs().max().item()
            scale = mine.grad.float().abs().max().item()
            table.add("gradients", f"gradient of {name}", diff, scale, GRAD_RTOL)


def settings(optimizers, p):
    """The optimizer that updates p and its group's settings (schedules apart), or None."""
    for opt in optimizers:
        for group in opt.param_groups:
            if any(q is p for q in group["params"]):
                keys = ("initial_lr", "betas", "eps", "weight_decay")
                return dict(optimizer=type(opt).__name__) | {
                    k: group[k] for k in keys if k in group
                }
    return None


def optimizer_steps(ns, loop, ours, h, table, pairs):
    """Two steps of each side's optimizers from the same weights and the same gradients: ours, and
    for the second step ours times a fixed random factor (with one gradient twice, Adam's
    bias-corrected moments do not depend on its betas). Both steps are in the lr schedule's
    constant part; the schedules are compared on their own below."""
    optimizers = [v for v in ns.values() if isinstance(v, torch.optim.Optimizer)]
    muons = [o for o in optimizers if type(o).__name__ == "Muon"]
    if not optimizers or not muons:
        raise Disagreement("optimizers: upstream's set-up made no Muon and Adam this tool can find")
    mine = train_gpt.build_optimizers(h, ours, rank=0, world_size=1)
    for name, theirs, ours_p in pairs:
        theirs_settings = settings(optimizers, theirs)
        ours_settings = settings(mine.values(), ours_p)
        what = f"{name}'s optimizer ({theirs_settings} upstream, {ours_settings} here)"
        table.add("optimizer settings", what, float(theirs_settings != ours_settings), 1.0, 0.0)
    grads = {name: p.grad.clone() for name, _, p in pairs if p.grad is not None}
    for step in (0, 1):
        train_gpt.set_schedules(mine, step, h)
        momentum_of(ns, loop, muons[0], step)
        before = {}
        with torch.no_grad():
            for name, theirs, ours_p in pairs:
                before[name] = ours_p.detach().float().clone()
                if name not in grads:
                    continue
                g = grads[name]
                if step:
                    gen = torch.Generator().manual_seed(len(name))
                    g = g * (2 * torch.rand(g.shape, generator=gen)).to(g.dtype)
                ours_p.grad = g.clone()
                theirs.grad = g.to(theirs.dtype, copy=True)  # upstream lerps it in place
        for opt in [*optimizers, *mine.values()]:
            opt.step()
        for name, theirs, ours_p in pairs:
            change = (ours_p.float() - before[name]).abs().max().item()
            diff = (theirs.float() - ours_p.float()).abs().max().item()
            kind = f"weights after step {step + 1}"
            table.add(kind, f"{name} after step {step + 1}", diff, change, STEP_RTOL)


def compare_schedules(ns, loop, ours, h, table):
    get_lr = ns.get("get_lr")
    get_window = ns.get("get_sliding_window_blocks")
    missing = [name for name in ("get_lr", "get_sliding_window_blocks") if name not in ns]
    if missing:
        raise Disagreement(f"schedules: upstream defines no {' and no '.join(missing)}")
    muon = next(v for v in ns.values() if type(v).__name__ == "Muon")
    steps = range(h.num_iterations)
    lr = max(abs(get_lr(s) - train_gpt.lr_multiplier(s, h)) for s in steps)
    steps_text = f"steps 0-{h.num_iterations - 1}"
    table.add(f"lr multiplier, {steps_text}", "lr multiplier", lr, 1.0, SCHEDULE_ATOL)
    mine = train_gpt.build_optimizers(h, ours, rank=0, world_size=1)
    momentum = 0.0
    for s in steps:
        train_gpt.set_schedules(mine, s, h)
        ours_momentum = mine["muon"].param_groups[0]["momentum"]
        momentum = max(momentum, abs(momentum_of(ns, loop, muon, s) - ours_momentum))
    table.add(f"Muon momentum, {steps_text}", "Muon momentum", momentum, 1.0, SCHEDULE_ATOL)
    every = range(h.num_iterations + 1)
    windows = max(abs(128 * get_window(s) - train_gpt.window_size(s, h)) for s in every)
    table.add(f"window (tokens), steps 0-{h.num_iterations}", "window", windows, 1.0, 0.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", help="an upstream record log, e.g. 2025-01-04_SoftCap's")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.manual_seed(0)  # upstream's model draws its initial weights: the same table every time
    ns, loop = load_upstream(source_of(args.log))
    h, ours = ours_model()
    table = Table()
    stopped = []  # differences past which the comparisons of that part cannot go on
    try:
        compare_hparams(ns, table)
        upstream = ns.get("model")
        if not isinstance(upstream, torch.nn.Module):
            raise Disagreement("model: upstream's set-up built no model this tool can find")
        pairs = mapped(upstream, ours)
        compare_parameters(pairs, table)
        forward_and_backward(ns, upstream, ours, h, table, pairs)
        optimizer_steps(ns, loop, ours, h, table, pairs)
    except Disagreement as e:
        stopped.append(str(e))
    try:
        compare_schedules(ns, loop, ours, h, table)
    except Disagreement as e:
        stopped.append(str(e))
    table.print()
    failures = table.failures + stopped
    for failure in failures[1:]:
        print(f"  also different: {failure}")
    if failures:
        print(f"upstream_check: DIFFERENT: {failures[0]}")
        return 1
    count = sum(row["n"] for row in table.rows.values())
    print(f"upstream_check: OK: {count} comparisons agree within tolerance ({args.log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
