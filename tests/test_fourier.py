"""Fourier analysis: exact decompositions of synthetic tables, digit means, the report, and
the tables of an LLM's digits against shuffled rows (the tiny Llama)."""

import math

import pytest
import torch

from arithinterp.fourier import (
    compute_digit_means,
    compute_fourier_r2,
    compute_fourier_report,
    compute_fourier_spectrum,
    compute_weight_tables,
    fourier_basis,
    llm_fourier,
)
from arithinterp.llm import make_prompts
from arithinterp.pretrained import load_llm
from arithinterp.probes.targets import make_probe_dataset
from arithinterp.tasks import PromptSuite
from arithinterp.tasks.vocab import CHAR_VOCAB

DIGIT_IDS = CHAR_VOCAB.digit_ids().tolist()


def _table_from(freqs: set[int], p: int = 10, d: int = 32, seed: int = 0) -> torch.Tensor:
    basis, row_freqs, _ = fourier_basis(p)
    rows = basis[[i for i, k in enumerate(row_freqs) if k in freqs]]
    gen = torch.Generator().manual_seed(seed)
    return rows.T @ torch.randn(len(rows), d, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("p", [10, 7, 113])
def test_basis_is_orthonormal(p):
    basis, freqs, names = fourier_basis(p)
    torch.testing.assert_close(basis @ basis.T, torch.eye(p, dtype=torch.float64))
    assert freqs[0] == 0 and max(freqs) == p // 2 and ("parity" in names) == (p % 2 == 0)


def test_a_table_built_from_chosen_frequencies_decomposes_into_exactly_those():
    chosen = {0, 1, 2, 5}
    spectrum = compute_fourier_spectrum(_table_from(chosen)).set_index("frequency")
    assert list(spectrum.index) == [0, 1, 2, 3, 4, 5]
    assert spectrum.loc[list(chosen), "fraction"].sum() == pytest.approx(1, abs=1e-6)
    assert spectrum.loc[[3, 4], "fraction"].abs().max() < 1e-6
    assert spectrum["cumulative"].iloc[-1] == pytest.approx(1, abs=1e-6)
    assert spectrum.loc[5, "components"] == "parity" and spectrum.loc[2, "period"] == 5
    assert math.isinf(spectrum.loc[0, "period"]) and math.isnan(spectrum.loc[0,
                                                                             "fraction_centered"])
    r2 = compute_fourier_r2(_table_from(chosen), sorted(chosen))
    assert (r2 - 1).abs().max() < 1e-6
    assert compute_fourier_r2(_table_from(chosen), [0, 1]).max() < 1 - 1e-3


@pytest.mark.parametrize("k", [1, 2, 5])
def test_one_frequency_is_all_of_the_variance(k):
    spectrum = compute_fourier_spectrum(_table_from({k})).set_index("frequency")
    assert spectrum.loc[k, "fraction"] == pytest.approx(1, abs=1e-6)
    assert spectrum.loc[k, "fraction_centered"] == pytest.approx(1, abs=1e-6)
    assert spectrum.drop(index=k)["fraction"].abs().max() < 1e-6


def test_parity_and_modular_tables():
    d = torch.arange(10, dtype=torch.float64)
    parity = compute_fourier_spectrum(((-1.0) ** d)[:, None]).set_index("frequency")
    assert parity.loc[5, "fraction"] == pytest.approx(1, abs=1e-9)
    p = 113  # a Nanda et al. modular-addition table with key frequencies 14 and 35
    spectrum = compute_fourier_spectrum(_table_from({14, 35}, p=p)).set_index("frequency")
    assert set(spectrum.index[spectrum["fraction"] > 1e-6]) == {14, 35}
    with pytest.raises(ValueError, match="frequencies"):
        compute_fourier_r2(_table_from({1}), [6])


def test_digit_means_are_exact_and_need_every_digit():
    acts = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    values = torch.arange(20) % 10
    means = compute_digit_means(acts, values)
    torch.testing.assert_close(means[3], (acts[3] + acts[13]) / 2)
    with pytest.raises(ValueError, match=r"missing \[9\]"):
        compute_digit_means(acts[:9], values[:9])


def test_report_on_a_tiny_model(tiny_model, tiny_task):
    tables = compute_weight_tables(tiny_model, DIGIT_IDS)
    torch.testing.assert_close(tables["W_E"], tiny_model.W_E.detach()[list(DIGIT_IDS)])
    torch.testing.assert_close(tables["W_U"], tiny_model.W_U.detach()[:, list(DIGIT_IDS)].T)
    data = make_probe_dataset(tiny_task, 64, seed=0)
    report = compute_fourier_report(tiny_model, data, layers=[0])
    sources = report.spectrum.groupby(["source", "grouped_by"], dropna=False)
    assert all(len(g) == 6 and g["fraction"].sum() == pytest.approx(1) for _, g in sources)
    assert {"W_E", "W_U"} <= set(report.r2["source"])
    acts = report.r2[report.r2["source"] == "activations"]
    assert "a0" in set(acts["grouped_by"]) and acts["layer"].eq(0).all()
    assert "a1" not in set(acts["grouped_by"])  # 2-digit operands: a1 is never 0
    assert report.r2["median_r2"].between(-1, 1).all()
    with pytest.raises(ValueError, match="sites"):
        compute_fourier_report(tiny_model, data, sites=("z",))


def test_fourier_tables_of_an_llms_digits_against_shuffled_rows(tiny_llama_dir):
    tiny = load_llm(tiny_llama_dir)
    suite = PromptSuite(op="+", digits=1, n_shots=2)
    prompts = make_prompts(tiny, suite, suite.problems(98))
    table = llm_fourier(tiny, prompts, n_shuffles=5)
    assert list(table["source"]) == ["W_E", "W_U", "resid_post", "resid_post"]
    assert list(table["layer"].iloc[2:]) == [0, 1]
    assert ((table["median_r2"] >= 0) & (table["median_r2"] <= 1)).all()
    # the frequency set with every frequency fits any table exactly, shuffled or not
    full = llm_fourier(tiny, prompts, freqs=(0, 1, 2, 3, 4, 5), n_shuffles=2)
    assert full["median_r2"].to_numpy() == pytest.approx(1.0)
    assert full["shuffled_r2"].to_numpy() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="all ten"):
        llm_fourier(tiny, prompts[slice(0, 3)])
