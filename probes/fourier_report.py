"""Fourier spectra of digit representations (embedding, unembedding, activations), into a run.

    python probes/fourier_report.py add3-reversed
    python probes/fourier_report.py runs/demo --sites resid_pre resid_post --freqs 0 1 2 5

For the ten digit tokens: the share of W_E's and W_U's sum of squares at each frequency
k = 0..5 over 0..9 (constant; periods 10, 5, 10/3, 2.5; parity), cumulative, and with the
constant removed; then the same for the mean activation per digit value of each operand
digit at its own token and each answer digit at the position that predicts it. The R² of a
frequency set (default {0, 1, 2, 5}, as in Bai et al. 2025) is its median over dimensions.
Adds stage ``fourier`` (``spectrum.parquet``, ``r2.parquet``, ``stage.json``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside us
from digit_probes import USER_ERRORS, fail, make_parser, run_stages, show, source_task  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Fourier report of the digit representations."""
    from arithinterp.fourier import TABLE_SITES

    parser = make_parser(__doc__)
    parser.add_argument("--sites", nargs="+", default=["resid_post"], choices=TABLE_SITES,
                        metavar="SITE", help=f"activation sites: {', '.join(TABLE_SITES)} "
                                             "(default: resid_post)")
    parser.add_argument("--layers", nargs="+", type=int, help="layers (default: all)")
    parser.add_argument("--freqs", nargs="+", type=int, default=[0, 1, 2, 5],
                        help="frequency set whose R² is reported (default: 0 1 2 5)")
    args = parser.parse_args(argv)
    try:
        from arithinterp import schema
        from arithinterp.stages.fourier import FourierConfig

        source_task(args)
        config = FourierConfig(n=args.n, seed=args.seed, sites=tuple(args.sites),
                               layers=tuple(args.layers) if args.layers else None,
                               freqs=tuple(args.freqs))
        run = run_stages(args, [config])
    except USER_ERRORS as e:
        return fail(e)
    spectrum = run.load(schema.FOURIER_SPECTRUM, schema.FOURIER)
    r2 = run.load(schema.FOURIER_R2, schema.FOURIER)
    weights = spectrum[spectrum["source"] != "activations"]
    wide = weights.pivot(index=["frequency", "period", "components"], columns="source",
                         values="fraction").reset_index()
    print("share of the sum of squares per frequency (digit rows of W_E, W_U):")
    print(show(wide, list(wide.columns)))
    print(f"\nR² of frequencies {{{', '.join(map(str, args.freqs))}}} (median over dimensions):")
    table = r2.fillna({"site": "-", "label": "-", "grouped_by": "-"})
    print(show(table, ["source", "site", "layer", "label", "grouped_by", "median_r2"]))
    print(f"{len(r2)} tables -> {run.dir / schema.FOURIER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
