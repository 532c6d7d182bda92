"""Stage `fourier`: Fourier spectra and R² of the digit representations (`arithinterp.fourier`)
into ``fourier/``."""

from __future__ import annotations

from dataclasses import dataclass

from arithinterp import schema
from arithinterp.fields import check_int
from arithinterp.fourier import BAI_FREQS, TABLE_SITES, compute_fourier_report
from arithinterp.probes.targets import make_probe_dataset
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, need_task, run_model

NAME = "fourier"


@dataclass(frozen=True)
class FourierConfig:
    """`n` fresh problems (seeded) for the activation tables, the sites and layers whose
    activations are tabled, and the frequency set whose R² is reported."""

    n: int = 2_000
    seed: int = 0
    sites: tuple[str, ...] = ("resid_post",)
    layers: tuple[int, ...] | None = None  # None: every layer
    freqs: tuple[int, ...] = BAI_FREQS

    def __post_init__(self) -> None:
        check_int("n", self.n, min=10)
        if not self.sites or set(self.sites) - set(TABLE_SITES):
            raise ValueError(f"sites must be a non-empty subset of {TABLE_SITES}, got "
                             f"{self.sites}")


Config = FourierConfig


def key(config: FourierConfig) -> str:
    return schema.FOURIER


def run(config: FourierConfig, run: RunDir, ctx: Context) -> dict:
    """Compute the Fourier report and write the spectrum and R² tables."""
    loaded = run_model(run, ctx)
    need_task(loaded, "the Fourier report")
    data = make_probe_dataset(loaded.task, config.n, config.seed)
    report = compute_fourier_report(loaded.model, data, sites=config.sites,
                                    layers=config.layers, freqs=config.freqs,
                                    progress=ctx.progress)
    run.save(schema.FOURIER_SPECTRUM, schema.FOURIER, report.spectrum)
    run.save(schema.FOURIER_R2, schema.FOURIER, report.r2)
    r2 = report.r2.set_index("source")
    return {"median_r2_W_E": float(r2.loc["W_E", "median_r2"]),
            "median_r2_W_U": float(r2.loc["W_U", "median_r2"])}
