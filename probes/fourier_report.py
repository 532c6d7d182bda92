"""Fourier spectra of digit representations (embedding, unembedding, activations), into a run.

    python probes/fourier_report.py add3-reversed
    python probes/fourier_report.py runs/demo --sites resid_pre resid_post --freqs 0 1 2 5

For the ten digit tokens: the share of W_E's and W_U's sum of squares at each frequency
k = 0..5 over 0..9 (constant; periods 10, 5, 10/3, 2.5; parity), cumulative, and with the
constant removed; then the same for the mean activation per digit value of each operand
digit at its own token and each answer digit at the position that predicts it. The R² of a
frequency set (default {0, 1, 2, 5}, as in Bai et al. 2025) is its median over dimensions.
Writes stage ``fourier`` with ``fourier/spectrum.parquet``, ``fourier/r2.parquet`` and
``fourier/config.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside us
from digit_probes import (  # noqa: E402
    USER_ERRORS,
    fail,
    finish_run,
    load_source,
    make_parser,
    open_run,
    show,
)

SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


def main(argv: list[str] | None = None) -> int:
    """Fourier report of the digit representations."""
    parser = make_parser(__doc__)
    parser.add_argument("--sites", nargs="+", default=["resid_post"], choices=SITES,
                        metavar="SITE", help=f"activation sites: {', '.join(SITES)} "
                                             "(default: resid_post)")
    parser.add_argument("--layers", nargs="+", type=int, help="layers (default: all)")
    parser.add_argument("--freqs", nargs="+", type=int, default=[0, 1, 2, 5],
                        help="frequency set whose R² is reported (default: 0 1 2 5)")
    args = parser.parse_args(argv)
    try:
        from arithinterp.fourier import compute_fourier_report
        from arithinterp.probes import make_probe_dataset

        path, loaded = load_source(args)
        data = make_probe_dataset(loaded.task, args.n, args.seed)
        start = time.perf_counter()
        report = compute_fourier_report(loaded.model, data, sites=args.sites,
                                        layers=args.layers, freqs=args.freqs,
                                        progress=not args.no_progress)
        seconds = time.perf_counter() - start
        run = open_run(args, path)
    except USER_ERRORS as e:
        return fail(e)
    from arithinterp.pipeline import write_fourier

    write_fourier(run, report, {"sites": args.sites, "layers": args.layers, "freqs": args.freqs,
                                "n": args.n, "seed": args.seed, "seconds": round(seconds, 1),
                                "task": asdict(loaded.task)})
    finish_run(run)
    weights = report.spectrum[report.spectrum["source"] != "activations"]
    wide = weights.pivot(index=["frequency", "period", "components"], columns="source",
                         values="fraction").reset_index()
    print("share of the sum of squares per frequency (digit rows of W_E, W_U):")
    print(show(wide, list(wide.columns)))
    print(f"\nR² of frequencies {{{', '.join(map(str, args.freqs))}}} (median over dimensions):")
    table = report.r2.fillna({"site": "-", "label": "-", "grouped_by": "-"})
    print(show(table, ["source", "site", "layer", "label", "grouped_by", "median_r2"]))
    print(f"{len(report.r2)} tables in {seconds:.1f} s -> {run.dir / 'fourier'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
