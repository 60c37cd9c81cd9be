"""Where a training step's time goes, by phase and by operator, for any script of this project.

    python tools/profile_step.py SCRIPT [--steps N] [-- --name=value ...]
    python tools/profile_step.py train_gpt.py -- --track=cpu_shakespeare

Loads SCRIPT as a module (its main does not run), builds its run as its main does (build_run), does
the compile warm-up, then times --steps steps by phase (the forward pass, the two optimizers' steps,
the gradient norm, and the rest: backward, zeroing, the data) and profiles --steps more with
torch.profiler, printing the operators by their own time. Run it alone: other jobs on the cores
move every number.
"""

import argparse
import os
import sys
import time

import torch
from layout import load_script


class Timed:
    """Wraps a callable; adds the seconds each call takes to `seconds`."""

    def __init__(self, call):
        self.call = call
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.call(*args, **kwargs)
        self.seconds += time.perf_counter() - t0
        return out


def by_phase(module, run, steps):
    """ms per step of each phase over `steps` steps."""
    forward = run.ddp = Timed(run.ddp)
    optimizers = {}
    for name, opt in run.optimizers.items():
        optimizers[name] = opt.step = Timed(opt.step)
    norm = module.torch.nn.utils.get_total_norm
    grad_norm = torch.nn.utils.get_total_norm = Timed(norm)
    t0 = time.perf_counter()
    for step in range(steps):
        module.train_step(run, step)
    total = time.perf_counter() - t0
    torch.nn.utils.get_total_norm = norm
    phases = {"forward": forward.seconds, "gradient norm": grad_norm.seconds}
    phases |= {f"{name} step": timed.seconds for name, timed in optimizers.items()}
    phases["backward and the rest"] = total - sum(phases.values())
    phases["whole step"] = total
    return {name: 1000 * seconds / steps for name, seconds in phases.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("script", help="a train_gpt.py: the root one, a record's, or a fork")
    ap.add_argument("--steps", type=int, default=20, help="steps timed, then as many profiled")
    argv = sys.argv[1:] if argv is None else argv
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []  # the script's own --name=value
    args = ap.parse_args(argv[: len(argv) - len(flags) - ("--" in argv)])
    module = load_script(os.path.abspath(args.script), "profiled_script")
    h = module.parse_args(flags)
    run = module.build_run(h, print)
    module.warm_up(run)
    phases = by_phase(module, run, args.steps)
    print(f"{'phase':<24} {'ms/step':>8} {'share':>6}")
    for name, ms in phases.items():
        print(f"{name:<24} {ms:>8.1f} {100 * ms / phases['whole step']:>5.0f}%")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for step in range(args.steps):
            module.train_step(run, step)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
