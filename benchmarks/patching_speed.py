"""Exact activation patching: this project's engine vs TransformerLens's patching module.

Both run in one process on the same model and the same clean/corrupt pairs; every grid is
checked for equality (max |difference| of cell means) before its times are compared. TL's
time includes the clean run_with_cache its functions need; ours includes both traces.
Grids: heads by position (TL's `get_act_patch_attn_head_out_by_pos`, the headline), the
residual stream by layer x position, heads over all positions; on the shipped 2-layer
add3-reversed model and on a 4-layer model of the same width, to show scaling with depth.
Then the embedded LLM (SmolLM2-135M: rotary, RMSNorm, gated MLP, grouped-query attention;
`--no-llm` skips it): heads over all positions and the residual stream by layer x position
in its last `--llm-layers` layers (TL's own patching loop over exactly those cells), on
`--llm-pairs` minimal pairs of 3-shot one-digit additions (a changed), and our engine's
time for the whole 30-layer grids, which TL's would take minutes for.
Then attribution patching: ours (one batched forward + backward) vs TL's
`tools.analysis.attribution_patch` (node granularity, one call per pair), checked equal on
the z cells, and how well the estimate tracks exact patching per grid (Pearson, Spearman,
top-10 overlap by |effect|, largest estimated / largest exact |effect|).

Run: .venv/bin/python benchmarks/patching_speed.py [--pairs 256] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # TL's patching loops print progress bars

import torch  # noqa: E402

from arithinterp.analysis.attribution_patching import (  # noqa: E402
    compare_with_exact,
    sweep_attribution,
)
from arithinterp.analysis.patching import PatchSpec, reference_patching, sweep_patching  # noqa: E402
from arithinterp.checkpoints import load_model  # noqa: E402
from arithinterp.core.metrics import AnswerMetric, answer_metric  # noqa: E402
from arithinterp.models import ModelSpec, build_model, resolve_device  # noqa: E402
from arithinterp.tasks import PromptPairs, make_digit_pairs  # noqa: E402

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


def bench_model(label: str, model, pairs, metric, repeats: int, device, grids=GRIDS
                ) -> list[str]:
    lines = []
    base, donor = pairs.corrupt.tokens.to(device), pairs.clean.tokens.to(device)
    for name, spec in grids:
        t_ours, ours = timed(lambda spec=spec: sweep_patching(model, pairs, spec, metric), repeats,
                             device)
        t_tl, ref = timed(lambda spec=spec: reference_patching(model, base, donor, spec, metric),
                          max(1, repeats // 2), device)
        diff = (ours.mean() - ref.cpu()).abs().max().item()
        lines.append(f"{label:<26} {name:<24} TL {t_tl:7.3f} s  ours {t_ours:7.3f} s  "
                     f"speed-up {t_tl / t_ours:6.1f}x  max|diff| {diff:.1e}")
    return lines


def bench_llm(n_pairs: int, n_last: int, repeats: int, device: torch.device,
              seed: int) -> list[str]:
    """SmolLM2: ours vs TL on its last n_last layers; ours alone on the full grids."""
    from arithinterp.llm import make_llm_pairs, pair_metric
    from arithinterp.pretrained import load_llm
    from arithinterp.tasks import PromptSuite

    loaded = load_llm("llm:smollm2", device=str(device))
    suite = PromptSuite(op="+", digits=1, n_shots=3)
    pairs = make_llm_pairs(loaded, suite, suite.problems(45, seed=seed), change="a", digit=0,
                           n=n_pairs, seed=seed)
    metric = pair_metric(pairs)
    n_layers = loaded.facts.n_layers
    last = tuple(range(n_layers - n_last, n_layers))
    label = f"SmolLM2 ({len(pairs)} pairs x {pairs.clean.tokens.shape[1]} tokens)"
    specs = [("heads all-pos (z)", "z", False), ("resid_pre layer x pos", "resid_pre", True)]
    lines = bench_model(f"{label} L{last[0]}-{last[-1]}", loaded.model, pairs, metric, repeats,
                        device, [(n, PatchSpec(s, by_pos, layers=last)) for n, s, by_pos in specs])
    for name, site, by_pos in specs:
        t, _ = timed(lambda s=site, b=by_pos: sweep_patching(loaded.model, pairs, PatchSpec(s, b),
                                                             metric), 1, device)
        lines.append(f"{label} all {n_layers} layers {name:<24} ours {t:7.3f} s")
    return lines


def _tl_node_scores(model, pairs: PromptPairs, metric: AnswerMetric) -> dict:
    """TL's node attribution averaged over pairs (one call per pair: TL loops per example)."""
    from transformer_lens.tools.analysis.attribution_patching import (
        EdgeAttributionConfig,
        attribution_patch,
    )

    device = next(model.parameters()).device
    config = EdgeAttributionConfig(granularity="node")
    totals: dict = {}
    for i in range(len(pairs)):
        one = metric.subset(torch.tensor([i]))
        res = attribution_patch(model, pairs.clean.tokens[i : i + 1].to(device),
                                pairs.corrupt.tokens[i : i + 1].to(device),
                                lambda logits, one=one: one(logits)[0], config)
        for node, score in res.node_scores.items():
            totals[node] = totals.get(node, 0.0) + score
    return {node: total / len(pairs) for node, total in totals.items()}


def bench_attribution(model, pairs: PromptPairs, metric: AnswerMetric, repeats: int,
                      device: torch.device) -> list[str]:
    """Timing of ours vs TL's attribution patching, and estimate-vs-exact scores per grid."""
    lines = []
    t_ours, ours = timed(lambda: sweep_attribution(model, pairs, PatchSpec("z"), metric),
                         repeats, device)
    t_tl, tl = timed(lambda: _tl_node_scores(model, pairs, metric), 1, device)
    effect = ours.mean() - ours.corrupted.mean()
    diff = max(abs(float(effect[n.layer, n.head, n.position]) - s) for n, s in tl.items()
               if n.kind == "attn_head_out")
    lines.append(f"attribution heads x pos (z): TL attribution_patch (node, per example) "
                 f"{t_tl:7.3f} s  ours {t_ours:7.3f} s  speed-up {t_tl / t_ours:6.1f}x  "
                 f"max|diff| {diff:.1e}")
    for name, spec in GRIDS:
        t_est, est = timed(lambda spec=spec: sweep_attribution(model, pairs, spec, metric),
                           repeats, device)
        t_ex, exact = timed(lambda spec=spec: sweep_patching(model, pairs, spec, metric),
                            repeats, device)
        c = compare_with_exact(est, exact, k=10)
        lines.append(f"attribution vs exact {name:<22} attr {t_est:6.3f} s  exact {t_ex:6.3f} s"
                     f"  Pearson {c['pearson']:.3f}  Spearman {c['spearman']:.3f}  "
                     f"top-{c['k']} {c['top_k_overlap']:.2f}  peak est/exact "
                     f"{c['peak_ratio']:.2f}  max|err| {c['max_abs_error']:.2f}  "
                     f"({c['n_cells']} cells)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-llm", dest="llm", action="store_false")
    parser.add_argument("--llm-pairs", type=int, default=8)
    parser.add_argument("--llm-layers", type=int, default=4)
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
                 + bench_model("random 4-layer d128", deep, pairs, metric, args.repeats, device)
                 + bench_attribution(loaded.model, pairs, metric, args.repeats, device)):
        print(line, flush=True)
    if args.llm:
        for line in bench_llm(args.llm_pairs, args.llm_layers, args.repeats, device, args.seed):
            print(line, flush=True)


if __name__ == "__main__":
    main()
