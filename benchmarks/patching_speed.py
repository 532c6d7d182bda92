"""Exact activation patching: this project's engine vs TransformerLens's patching module.

Both run in one process on the same model and the same clean/corrupt pairs; every grid is
checked for equality (max |difference| of cell means) before its times are compared. TL's
time includes the clean run_with_cache its functions need; ours includes both traces.
Grids: heads by position (TL's `get_act_patch_attn_head_out_by_pos`, the headline), the
residual stream by layer x position, heads over all positions; on the shipped 2-layer
add3-reversed model and on a 4-layer model of the same width, to show scaling with depth.

Run: .venv/bin/python benchmarks/patching_speed.py [--pairs 256] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # TL's patching loops print progress bars

import torch  # noqa: E402

from arithinterp.analysis.metrics import answer_metric  # noqa: E402
from arithinterp.analysis.patching import PatchSpec, reference_patching, sweep_patching  # noqa: E402
from arithinterp.models import ModelSpec, build_model, load_model, resolve_device  # noqa: E402
from arithinterp.tasks import make_digit_pairs  # noqa: E402

GRIDS = [("heads x pos (z)", PatchSpec("z")), ("resid_pre layer x pos", PatchSpec("resid_pre")),
         ("heads all-pos (z)", PatchSpec("z", by_pos=False))]


def timed(fn, repeats: int, device: torch.device):
    """Median wall time of fn() over repeats, and its last result."""
    times, out = [], None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bench_model(label: str, model, pairs, metric, repeats: int, device) -> list[str]:
    lines = []
    base, donor = pairs.corrupt.tokens.to(device), pairs.clean.tokens.to(device)
    for name, spec in GRIDS:
        t_ours, ours = timed(lambda spec=spec: sweep_patching(model, pairs, spec, metric), repeats,
                             device)
        t_tl, ref = timed(lambda spec=spec: reference_patching(model, base, donor, spec, metric),
                          max(1, repeats // 2), device)
        diff = (ours.mean() - ref.cpu()).abs().max().item()
        lines.append(f"{label:<26} {name:<24} TL {t_tl:7.3f} s  ours {t_ours:7.3f} s  "
                     f"speed-up {t_tl / t_ours:6.1f}x  max|diff| {diff:.1e}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    loaded = load_model("add3-reversed", device=str(device))
    task = loaded.task
    pairs = make_digit_pairs(task, args.pairs, operand="a", digit=1, seed=args.seed)
    metric = answer_metric(pairs, 1)
    print(f"torch {torch.__version__}  device {device}  threads {args.threads}  "
          f"pairs {args.pairs} (a_1 corrupted, metric {metric.label})  seed {args.seed}  "
          f"tokens/prompt {task.seq_len}")
    deep = build_model(ModelSpec(n_layers=4, d_model=128, n_heads=4, d_mlp=512, seed=args.seed),
                       task, str(device)).eval()
    for line in (bench_model("add3-reversed (2 layers)", loaded.model, pairs, metric,
                             args.repeats, device)
                 + bench_model("random 4-layer d128", deep, pairs, metric, args.repeats, device)):
        print(line)


if __name__ == "__main__":
    main()
