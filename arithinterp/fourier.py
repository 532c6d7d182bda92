"""Fourier analysis of digit representations: bases over Z_p, spectra, R² of frequency sets.

A "table" is p rows (one per residue or digit 0..p-1) by d columns: the ten digit rows of
the embedding ``W_E``, the unembedding ``W_U`` (transposed), or the mean activation per
digit value at some hook and position. Over p points the real Fourier basis has frequency
k = 0 (constant), cos/sin pairs for 0 < k < p/2 and, for even p, k = p/2 alone (the parity
component (-1)^x). For digits (p = 10): periods 10 (k=1), 5 (k=2), 10/3, 2.5 and 2 (k=5).

``fraction`` is a frequency's share of the table's total sum of squares (constant included;
fractions sum to 1 by Parseval); ``fraction_centered`` its share once each column's mean
over the p rows is removed (NaN for k = 0). ``compute_fourier_r2`` fits each column with
the basis vectors of a frequency set (Bai et al. 2025 report a median R² of 0.84 for
embeddings with {0, 1, 2, 5}); the same spectrum of a [p, d] table over Z_p gives Nanda et
al.'s (2023) key frequencies for modular tasks. `llm_fourier` asks the same of a pretrained
LLM's digit tokens and of its residual stream grouped by the digit it is about to write
(Zhou et al. 2024).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from arithinterp.components import hook_name
from arithinterp.core.cache import run_cached
from arithinterp.models import HookedModel, LoadedModel, embedding, facts, readout
from arithinterp.tasks import Dataset, TokenPrompts
from arithinterp.tasks.vocab import CHAR_VOCAB

BAI_FREQS = (0, 1, 2, 5)
TABLE_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


def fourier_basis(p: int) -> tuple[Float[Tensor, "p p"], list[int], list[str]]:
    """Orthonormal real Fourier basis over Z_p (rows), with each row's frequency and name."""
    if p < 2:
        raise ValueError(f"p must be >= 2, got {p}")
    x = torch.arange(p, dtype=torch.float64)
    rows, freqs, names = [torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64)], [0], ["const"]
    for k in range(1, p // 2 + 1):
        angle = 2 * math.pi * k * x / p
        if 2 * k == p:  # cos(pi x) = (-1)^x; its sine vanishes
            rows.append(torch.cos(angle) / math.sqrt(p))
            freqs.append(k)
            names.append("parity")
            continue
        rows += [torch.cos(angle) * math.sqrt(2 / p), torch.sin(angle) * math.sqrt(2 / p)]
        freqs += [k, k]
        names += [f"cos{k}", f"sin{k}"]
    return torch.stack(rows), freqs, names


def compute_fourier_spectrum(table: Float[Tensor, "p feature"]) -> pd.DataFrame:
    """Power per frequency of a [p, d] table, summed over columns; one row per frequency.

    Columns: frequency, period (p / k; inf for k = 0), components, power, fraction,
    cumulative (fraction summed over frequencies up to this one), fraction_centered.
    """
    p = table.shape[0]
    basis, freqs, names = fourier_basis(p)
    coef = basis @ table.detach().double().cpu()  # [p basis rows, d]
    power_per_row = coef.pow(2).sum(-1)
    total = float(power_per_row.sum())
    k_of = torch.tensor(freqs)
    rows = []
    for k in range(p // 2 + 1):
        power = float(power_per_row[k_of == k].sum())
        rows.append({"frequency": k, "period": math.inf if k == 0 else p / k,
                     "components": ",".join(n for n, f in zip(names, freqs, strict=True)
                                            if f == k),
                     "power": power})
    df = pd.DataFrame(rows)
    df["fraction"] = df["power"] / total if total > 0 else math.nan
    df["cumulative"] = df["fraction"].cumsum()
    centered = total - df.loc[0, "power"]
    df["fraction_centered"] = (df["power"] / centered).where(df["frequency"] > 0) \
        if centered > 0 else math.nan
    return df


def compute_fourier_r2(
    table: Float[Tensor, "p feature"], freqs: Sequence[int] = BAI_FREQS
) -> Float[Tensor, " feature"]:
    """R² of each column fit by the basis vectors of `freqs` (NaN for a constant column)."""
    p = table.shape[0]
    if bad := [k for k in freqs if not 0 <= k <= p // 2]:
        raise ValueError(f"frequencies must be in 0..{p // 2} for p = {p}, got {bad}")
    basis, row_freqs, _ = fourier_basis(p)
    chosen = basis[[i for i, k in enumerate(row_freqs) if k in set(freqs)]]
    y = table.detach().double().cpu()
    residual = y - chosen.T @ (chosen @ y)
    ss_tot = (y - y.mean(0)).pow(2).sum(0)
    r2 = 1 - residual.pow(2).sum(0) / ss_tot
    return torch.where(ss_tot > 1e-12 * (1 + y.pow(2).sum(0)), r2, torch.nan)


def compute_digit_means(
    acts: Float[Tensor, "batch feature"], values: Int[Tensor, " batch"], p: int = 10
) -> Float[Tensor, "p feature"]:
    """Mean activation per value 0..p-1; every value must occur."""
    if values.min() < 0 or values.max() >= p:
        raise ValueError(f"values must lie in 0..{p - 1}, got {int(values.min())}.."
                         f"{int(values.max())}")
    counts = torch.bincount(values, minlength=p)
    if (counts == 0).any():
        missing = [v for v in range(p) if v >= counts.numel() or counts[v] == 0]
        raise ValueError(f"values must cover 0..{p - 1} (missing {missing}); use more examples")
    sums = torch.zeros(p, acts.shape[1], dtype=torch.float64).index_add_(0, values,
                                                                         acts.double())
    return (sums / counts[:, None]).to(acts.dtype)


def compute_weight_tables(
    model: HookedModel, digit_ids: Sequence[int] | Tensor
) -> dict[str, Float[Tensor, "digit d_model"]]:
    """The digit rows (token ids `digit_ids`, in digit order) of the embedding and of the
    (transposed) unembedding."""
    ids = [int(i) for i in digit_ids]
    return {"W_E": embedding(model).detach().cpu()[ids].float(),
            "W_U": readout(model).W_U.detach().cpu()[:, ids].T.float()}


def digit_ids(data: Dataset | None) -> Tensor:
    """Token ids of the digits 0..9 in the vocabulary of `data`'s task (the arithmetic
    character vocabulary when there is no data)."""
    return (data.spec.vocab if data is not None else CHAR_VOCAB).digit_ids()


@dataclass(frozen=True)
class FourierReport:
    """Spectra (one row per table x frequency) and R² of a frequency set (one row per table)."""

    spectrum: pd.DataFrame
    r2: pd.DataFrame


def _digit_groupings(data: Dataset) -> list[tuple[str, int, Tensor]]:
    """(digit name, position, values): operand digits at their own token, answer digits
    at the position that predicts them."""
    spec = data.spec
    ops = spec.operand_positions()
    out = [(f"a{i}", p, data.a_digits[:, i]) for i, p in enumerate(ops["a"])]
    out += [(f"b{j}", p, data.b_digits[:, j]) for j, p in enumerate(ops["b"])]
    out += [(f"c{k}", p - 1, data.answer_digits[:, k])
            for k, p in enumerate(spec.answer_positions())]
    return out


def compute_fourier_report(
    model: HookedModel,
    data: Dataset | None = None,
    *,
    sites: Sequence[str] = ("resid_post",),
    layers: Sequence[int] | None = None,
    freqs: Sequence[int] = BAI_FREQS,
    batch_size: int = 256,
    progress: bool = False,
) -> FourierReport:
    """Spectra and R² of W_E, W_U and, given data, of the mean activation per digit value.

    Digit tokens: those of `data`'s vocabulary (default: the arithmetic tasks' characters).
    Activation tables: operand digit a_i (b_j) at its own token, answer digit c_k at the
    position that predicts it, grouped by that digit's value, for each site and layer;
    digits that do not take all ten values in `data` are skipped.
    """
    if bad := sorted(set(sites) - set(TABLE_SITES)):
        raise ValueError(f"sites must be among {TABLE_SITES}, got {bad}")
    tables: list[tuple[dict, Tensor]] = [
        ({"source": name, "site": None, "layer": None, "pos": None, "label": None,
          "grouped_by": None}, t)
        for name, t in compute_weight_tables(model, digit_ids(data)).items()]
    if data is not None:
        layer_list = range(facts(model).n_layers) if layers is None else layers
        names = {(s, L): hook_name(s, L) for s in sites for L in layer_list}
        cache = run_cached(model, data.tokens, list(names.values()), batch_size=batch_size,
                           progress=progress, desc="activations")
        labels = data.spec.position_labels()
        for (site, layer), hook in names.items():
            for digit, pos, values in _digit_groupings(data):
                if values.unique().numel() < 10:
                    continue  # e.g. the top digit of a sum is only 0 or 1
                tables.append(({"source": "activations", "site": site, "layer": layer,
                                "pos": pos, "label": labels[pos], "grouped_by": digit},
                               compute_digit_means(cache[hook][:, pos], values)))
    spectra, r2_rows = [], []
    for key, table in tables:
        spectra.append(compute_fourier_spectrum(table).assign(**key))
        r2 = compute_fourier_r2(table, freqs)
        r2_rows.append({**key, "freqs": ",".join(map(str, sorted(freqs))),
                        "median_r2": float(r2.nanmedian()), "mean_r2": float(r2.nanmean()),
                        "n_features": int(r2.numel())})
    spectrum = pd.concat(spectra, ignore_index=True)
    order = ["source", "site", "layer", "pos", "label", "grouped_by"]
    spectrum = spectrum[order + [c for c in spectrum.columns if c not in order]]
    r2_table = pd.DataFrame(r2_rows)
    for df in (spectrum, r2_table):
        df["layer"] = df["layer"].astype("Int64")
        df["pos"] = df["pos"].astype("Int64")
    return FourierReport(spectrum, r2_table)


# ---- the digits of a pretrained LLM (Zhou et al. 2024) -------------------------------------
def llm_fourier(loaded: LoadedModel, prompts: TokenPrompts, *, freqs=BAI_FREQS,
                n_shuffles: int = 20, seed: int = 0, batch_size: int = 16) -> pd.DataFrame:
    """How much of the digit tokens' embedding and unembedding, and of the residual stream
    at the last position grouped by the digit the model is about to write (the answer's
    first token), the Fourier basis over the ten digits explains with `freqs` (default
    {0, 1, 2, 5}: periods 10, 5 and 2), against the same tables with their ten rows
    shuffled (`n_shuffles` seeded permutations: the control's mean). Rows: source (W_E, W_U,
    resid_post), layer, grouped_by, freqs, median_r2, shuffled_r2, n_features."""
    digits = loaded.tokenizer.digit_ids()
    value = {int(t): d for d, t in enumerate(digits.tolist())}
    keep = [i for i, t in enumerate(prompts.target.tolist()) if t in value]
    values = torch.tensor([value[int(prompts.target[i])] for i in keep])
    if len(keep) == 0 or values.unique().numel() < 10:
        raise ValueError(f"the prompts' answers start with {values.unique().numel()} of the "
                         "ten digits; grouping by digit needs all ten (use more problems)")
    weights = compute_weight_tables(loaded.model, digits)
    tables = [("W_E", None, None, weights["W_E"]), ("W_U", None, None, weights["W_U"])]
    names = [hook_name("resid_post", layer) for layer in range(facts(loaded.model).n_layers)]
    cache = run_cached(loaded.model, prompts.tokens[keep], names, batch_size=batch_size)
    for layer, name in enumerate(names):
        tables.append(("resid_post", layer, "first answer digit",
                       compute_digit_means(cache[name][:, -1], values)))
    gen = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(10, generator=gen) for _ in range(n_shuffles)]
    rows = []
    for source, layer, grouped_by, table in tables:
        shuffled = [float(compute_fourier_r2(table[perm], freqs).nanmedian()) for perm in perms]
        rows.append({"source": source, "layer": layer, "grouped_by": grouped_by,
                     "freqs": ",".join(map(str, sorted(freqs))),
                     "median_r2": float(compute_fourier_r2(table, freqs).nanmedian()),
                     "shuffled_r2": sum(shuffled) / len(shuffled),
                     "n_features": int(table.shape[1])})
    out = pd.DataFrame(rows)
    out["layer"] = out["layer"].astype("Int64")
    return out
