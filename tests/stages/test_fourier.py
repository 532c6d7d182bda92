"""Stage `fourier`: spectra and R² written through the schema."""

import pytest

from arithinterp import schema
from arithinterp.runs import RunDir
from arithinterp.stages.fourier import FourierConfig


def test_the_fourier_report_is_written(demo_runs):
    run = RunDir.open(demo_runs[0] / "tiny")
    r2 = run.load(schema.FOURIER_R2, schema.FOURIER).set_index("source")
    summary = run.stage_summary(schema.FOURIER)
    assert summary["median_r2_W_E"] == pytest.approx(float(r2.loc["W_E", "median_r2"]))
    spectrum = run.load(schema.FOURIER_SPECTRUM, schema.FOURIER)
    assert set(spectrum["source"]) == {"W_E", "W_U", "activations"}


def test_configs_are_checked():
    with pytest.raises(ValueError, match="sites must be"):
        FourierConfig(sites=("z",))
    with pytest.raises(ValueError, match="n must be"):
        FourierConfig(n=3)
