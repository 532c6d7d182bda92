"""Linear probes for operand digits, answer digits and carries, written into a run directory.

    python probes/digit_probes.py add3-reversed            # a zoo model: a new run in runs/
    python probes/digit_probes.py runs/demo                # a run: probes its own model
    python probes/digit_probes.py add3-reversed --run p1 --n 1000 --layers 1

Writes stage ``probes`` with ``probes/digits.parquet`` (one row per probe x metric, with
shuffled-label, random-model and baseline controls), ``probes/digits_summary.parquet``,
``probes/digits_weights.safetensors`` (coef/intercept in activation space) and
``probes/digits_config.json``. The helpers here are shared by the other scripts in probes/.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)


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
    from arithinterp.probes import SITES

    p.add_argument("--sites", nargs="+", default=["resid_post"], choices=SITES, metavar="SITE",
                   help=f"activation sites: {', '.join(SITES)} (default: resid_post)")
    p.add_argument("--layers", nargs="+", type=int, help="layers (default: all)")
    p.add_argument("--positions", nargs="+", type=int,
                   help="token positions (default: every position from the first one whose "
                        "prefix holds the target's operand digits)")
    p.add_argument("--cv", type=int, help="also report k-fold cross-validation (by problem)")
    p.add_argument("--no-random-control", action="store_true",
                   help="skip the randomly initialised model control")


def load_source(args: argparse.Namespace):
    """(checkpoint path, loaded model) of RUN_OR_MODEL; a clash with --run is refused early."""
    from arithinterp.models import load_model
    from arithinterp.pipeline import model_source
    from arithinterp.runs import is_run

    path = model_source(args.source)
    existing = args.runs_dir / args.run if args.run else None
    if not is_run(args.source) and existing is not None and is_run(existing):
        made_from = model_source(existing)
        if made_from.resolve() != path.resolve():
            raise ValueError(f"run {existing} was made from {made_from}, not {path}")
    loaded = load_model(path, device=args.device)
    if loaded.task is None:
        raise ValueError(f"{path} records no arithmetic task to probe")
    return path, loaded


def open_run(args: argparse.Namespace, path: Path):
    """RUN_OR_MODEL's run, or --runs-dir/--run (created, with a model stage, if new)."""
    from arithinterp.pipeline import record_model_stage
    from arithinterp.runs import RunDir, is_run

    if is_run(args.source):
        return RunDir.open(args.source)
    name = args.run or datetime.now(UTC).strftime("probes-%Y%m%d-%H%M%S")
    if is_run(args.runs_dir / name):
        run = RunDir.open(args.runs_dir / name)
    else:
        run = RunDir.create(args.runs_dir, name, config={"model": str(path)},
                            seeds={"probes": args.seed})
    record_model_stage(run, path)
    return run


def finish_run(run) -> None:
    """Mark the run complete unless another stage (another process) is still running."""
    if all(s["status"] == "done" for s in run.manifest["stages"].values()):
        run.finish()


def show(df, columns: list[str]) -> str:
    """A compact plain-text table."""
    return df[columns].to_string(index=False, float_format=lambda x: f"{x:.3f}")


def run_probes(argv: list[str] | None, *, key: str, groups: list[str], description: str,
               note=None) -> int:
    """Parse arguments, fit the probes of `groups`, write `probes/{key}*`, print a summary."""
    parser = make_parser(description)
    add_probe_options(parser)
    parser.add_argument("--targets", nargs="+", default=groups, metavar="TARGET",
                        help=f"target names (a0, carry2, ...) or groups (default: "
                             f"{' '.join(groups)})")
    args = parser.parse_args(argv)
    try:
        from arithinterp.probes import fit_probes, make_probe_dataset, make_targets

        path, loaded = load_source(args)
        if note is not None and (message := note(loaded.task)):
            print(message)
        data = make_probe_dataset(loaded.task, args.n, args.seed)
        targets = make_targets(data, args.targets)
        if not targets:
            raise ValueError(f"no target of {args.targets} varies over these {args.n} problems")
        start = time.perf_counter()
        results = fit_probes(
            loaded, data, targets, sites=args.sites, layers=args.layers,
            positions=args.positions, seed=args.seed, cv=args.cv,
            random_model_control=not args.no_random_control, progress=not args.no_progress)
        seconds = time.perf_counter() - start
        run = open_run(args, path)
    except USER_ERRORS as e:
        return fail(e)
    from arithinterp.pipeline import write_probes

    summary = write_probes(run, key, results, {
        "n": args.n, "seed": args.seed, "seconds": round(seconds, 1),
        "task": asdict(loaded.task), "targets": [t.name for t in targets]})
    table = results.table
    finish_run(run)
    print(show(summary, ["target", "site", "metric", "best_score", "best_layer", "best_pos",
                         "best_label", "shuffled", "random_model", "first_layer", "first_pos",
                         "first_label"]))
    print(f"{table['probe'].nunique()} probes on {args.n} problems in {seconds:.1f} s "
          f"-> {run.dir / 'probes' / (key + '.parquet')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Digit and carry probes."""
    return run_probes(argv, key="digits", groups=["operands", "answer", "carries"],
                      description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
