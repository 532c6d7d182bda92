"""Linear probes for operand digits, answer digits and carries, written into a run directory.

    python probes/digit_probes.py add3-reversed            # a zoo model: a new run in runs/
    python probes/digit_probes.py runs/demo                # a run: probes its own model
    python probes/digit_probes.py add3-reversed --run p1 --n 1000 --layers 1

Adds stage ``probes/digits`` (``scores.parquet``: one row per probe x metric, with
shuffled-label, random-model and baseline controls; ``summary.parquet``;
``weights.safetensors``: coef/intercept in activation space; ``stage.json``). The helpers
here are shared by the other scripts in probes/: each is thin over the stages of
`arithinterp.stages`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

USER_ERRORS = (ValueError, OSError)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def fail(error: Exception) -> int:
    """Print a library error as one line on stderr; the exit code for bad input."""
    print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
          file=sys.stderr)
    return 2


def make_parser(description: str, *, n: int = 2000) -> Parser:
    """Arguments every probe script shares: what to probe, where to write, how many problems."""
    p = Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RUN_OR_MODEL",
                   help="a run directory (its model is probed and the results added to it), "
                        "a zoo model name or a checkpoint directory")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"),
                   help="where a new run goes when RUN_OR_MODEL is a model (default: runs)")
    p.add_argument("--run", help="name of that run (default: probes-<UTC timestamp>); an "
                                 "existing run of the same model is added to")
    p.add_argument("--n", type=int, default=n, help=f"problems to probe (default: {n})")
    p.add_argument("--seed", type=int, default=0, help="seed of the problems and the split")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def add_probe_options(p: Parser) -> None:
    """Options of the probe sweep."""
    from arithinterp.probes.sweep import SITES

    p.add_argument("--sites", nargs="+", default=["resid_post"], choices=SITES, metavar="SITE",
                   help=f"activation sites: {', '.join(SITES)} (default: resid_post)")
    p.add_argument("--layers", nargs="+", type=int, help="layers (default: all)")
    p.add_argument("--positions", nargs="+", type=int,
                   help="token positions (default: every position from the first one whose "
                        "prefix holds the target's operand digits)")
    p.add_argument("--cv", type=int, help="also report k-fold cross-validation (by problem)")
    p.add_argument("--no-random-control", action="store_true",
                   help="skip the randomly initialised model control")


def source_task(args: argparse.Namespace):
    """The task of RUN_OR_MODEL's model (a bad source fails here, before anything is made)."""
    from arithinterp.checkpoints import load_model

    loaded = load_model(args.source)
    if loaded.task is None:
        raise ValueError(f"{args.source} records no arithmetic task to probe")
    return loaded.task


def run_stages(args: argparse.Namespace, configs: list):
    """Run the stages on RUN_OR_MODEL (added to it, or to --runs-dir/--run)."""
    from arithinterp.stages.base import Context
    from arithinterp.stages.job import run_on

    name = args.run or datetime.now(UTC).strftime("probes-%Y%m%d-%H%M%S")
    ctx = Context(device=args.device, progress=not args.no_progress)
    return run_on(args.source, configs, runs_dir=args.runs_dir,
                  name=None if _is_run(args.source) else name, ctx=ctx).run


def _is_run(path: str) -> bool:
    from arithinterp.catalog import is_run

    return is_run(path)


def show(df, columns: list[str]) -> str:
    """A compact plain-text table."""
    return df[columns].to_string(index=False, float_format=lambda x: f"{x:.3f}")


def run_probes(argv: list[str] | None, *, name: str, groups: list[str], description: str,
               note=None) -> int:
    """Parse arguments, fit the probes of `groups` into stage ``probes/<name>``, print a
    summary."""
    parser = make_parser(description)
    add_probe_options(parser)
    parser.add_argument("--targets", nargs="+", default=groups, metavar="TARGET",
                        help=f"target names (a0, carry2, ...) or groups (default: "
                             f"{' '.join(groups)})")
    args = parser.parse_args(argv)
    try:
        from arithinterp import schema
        from arithinterp.probes.sweep import ProbeConfig
        from arithinterp.stages.probes import ProbesConfig

        task = source_task(args)
        if note is not None and (message := note(task)):
            print(message)
        fit = ProbeConfig(sites=tuple(args.sites), seed=args.seed, cv=args.cv,
                          layers=tuple(args.layers) if args.layers else None,
                          positions=tuple(args.positions) if args.positions else None,
                          random_model_control=not args.no_random_control)
        config = ProbesConfig(name=name, n=args.n, targets=tuple(args.targets), fit=fit)
        config.check(task)
        run = run_stages(args, [config])
    except USER_ERRORS as e:
        return fail(e)
    key = schema.probes_key(name)
    summary = run.load(schema.PROBE_SUMMARY, key)
    print(show(summary, ["target", "site", "metric", "best_score", "best_layer", "best_pos",
                         "best_label", "shuffled", "random_model", "first_layer", "first_pos",
                         "first_label"]))
    done = run.stage_summary(key)
    print(f"{done['n_probes']} probes on {args.n} problems in {done['seconds']:.1f} s "
          f"-> {run.dir / key}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Digit and carry probes."""
    return run_probes(argv, name="digits", groups=["operands", "answer", "carries"],
                      description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
