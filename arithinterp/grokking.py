"""Modular-arithmetic models in the Fourier basis (Nanda et al. 2023, "Progress measures for
grokking via mechanistic interpretability").

Everything is measured on the full p × p grid of problems (a-major: row a·p + b), at the '='
position, with logits over the p residue tokens only (the specials and '=' are never answers).

- The **logit spectrum**: after removing what softmax ignores (the mean over c) and what does
  not depend on the problem (the mean over (a, b) for each c), the share of the logits' power
  along cos(w_k(a+b)) and sin(w_k(a+b)) for each frequency k, w_k = 2πk/p. A model that
  computes cos(w_k(a+b−c)) puts its logits there. The directions are orthogonal over the grid,
  so shares of different k add.
- The **key frequencies**: the top of that spectrum, cut at its largest ratio between
  neighbours (automatic; no threshold to tune).
- **Restricted logits** keep only the key directions (plus the per-c constant); **excluded
  logits** remove the key directions. Their cross-entropy on the training and test pairs is
  the restricted / excluded loss.
- **Neuron variance explained**: each MLP neuron's activation over (a, b) in the 2-D Fourier
  basis; a key frequency k explains the terms in cos/sin(w_k a), cos/sin(w_k b) and their
  products. Per neuron: its best frequency and the share it explains.
- **Gini** sparsity of the Fourier norms of the embedding (residue rows of W_E over a) and of
  the neuron-logit map W_L = W_out W_U (over c): near 1 when a few frequencies carry all.
- `compute_progress` runs all of the above on each weight snapshot of a training run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from arithinterp.components import hook_name
from arithinterp.core.cache import run_cached
from arithinterp.fourier import compute_fourier_spectrum, fourier_basis
from arithinterp.models import HookedModel, device_of, embedding, facts
from arithinterp.tasks import Dataset, ModularTask, Task, make_dataset

GRID_BATCH = 4_096


def check_modular(task: Task | None) -> ModularTask:
    """The task, if it is modular (these analyses need one token per residue)."""
    if not isinstance(task, ModularTask):
        raise ValueError(f"the Fourier analysis of grokking needs a modular task (e.g. "
                         f"mod113-add), got {task.name if task is not None else 'no task'}")
    return task


def full_grid(task: ModularTask) -> Dataset:
    """All p² problems, a-major (row a·p + b)."""
    p = check_modular(task).p
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return make_dataset(task, a, b)


def residue_ids(task: ModularTask) -> Int[Tensor, " p"]:
    """Token ids of the residues 0..p-1."""
    ids = check_modular(task).vocab.ids
    return torch.tensor([ids[str(r)] for r in range(task.p)])


@torch.no_grad()
def grid_logits(model: HookedModel, task: ModularTask) -> Float[Tensor, "a b c"]:
    """Logits over the residues at '=' for every problem, as [a, b, c] (float64)."""
    grid = full_grid(task)
    prompts, ids, eq = grid.prompts, residue_ids(task), task.prompt_len - 1
    parts = [model(prompts[i:i + GRID_BATCH].to(device_of(model)))[:, eq, ids].double().cpu()
             for i in range(0, len(grid), GRID_BATCH)]
    return torch.cat(parts).reshape(task.p, task.p, task.p)


def grid_neurons(model: HookedModel, task: ModularTask, layer: int = 0
                 ) -> Float[Tensor, "a b neuron"]:
    """MLP neuron activations (hook_post) at '=' for every problem, as [a, b, neuron]."""
    name = hook_name("mlp_post", layer)
    grid = full_grid(task)
    acts = run_cached(model, grid.prompts, [name], batch_size=GRID_BATCH)[name]
    return acts[:, task.prompt_len - 1].double().reshape(task.p, task.p, -1)


def _sum_directions(p: int, k: int) -> Float[Tensor, "2 a b"]:
    """cos(w_k(a+b)) and sin(w_k(a+b)) over the grid, unit norm."""
    s = (torch.arange(p)[:, None] + torch.arange(p)[None, :]).double()
    angle = 2 * math.pi * k * s / p
    dirs = torch.stack([torch.cos(angle), torch.sin(angle)])
    return dirs / dirs.flatten(1).norm(dim=1)[:, None, None]


def _centered(logits: Float[Tensor, "a b c"]) -> Float[Tensor, "a b c"]:
    """Without the mean over c (softmax ignores it) and the per-c mean over (a, b)."""
    x = logits - logits.mean(-1, keepdim=True)
    return x - x.mean((0, 1), keepdim=True)


def _key_part(logits: Float[Tensor, "a b c"], k: int) -> Float[Tensor, "a b c"]:
    """The logits' projection (for each c) on cos/sin(w_k(a+b))."""
    dirs = _sum_directions(logits.shape[0], k)
    coef = torch.einsum("dab,abc->dc", dirs, logits)
    return torch.einsum("dab,dc->abc", dirs, coef)


def logit_spectrum(logits: Float[Tensor, "a b c"]) -> pd.DataFrame:
    """Share of the centered logits' power along cos/sin(w_k(a+b)), k = 1 .. p//2.

    Columns: frequency, period (p / k), fraction."""
    p = logits.shape[0]
    x = _centered(logits.double())
    total = float(x.pow(2).sum())
    rows = []
    for k in range(1, p // 2 + 1):
        dirs = _sum_directions(p, k)
        power = float(torch.einsum("dab,abc->dc", dirs, x).pow(2).sum())
        if 2 * k == p:  # sin(π(a+b)) vanishes: one direction, counted once
            power = float(torch.einsum("ab,abc->c", dirs[0], x).pow(2).sum())
        rows.append({"frequency": k, "period": p / k,
                     "fraction": power / total if total > 0 else math.nan})
    return pd.DataFrame(rows)


def key_frequencies(spectrum: pd.DataFrame, max_keys: int | None = None) -> tuple[int, ...]:
    """The frequencies above the largest drop (ratio of neighbours) of the sorted spectrum,
    among the top `max_keys` (default p // 4), in increasing order."""
    order = spectrum.sort_values("fraction", ascending=False)
    fractions = order["fraction"].to_numpy()
    if len(fractions) < 2 or not fractions[0] > 0:
        raise ValueError("the spectrum is empty or all zero: no key frequencies")
    top = min(max_keys or max(1, len(fractions) // 2), len(fractions) - 1)  # p // 4
    floor = 1e-12 * fractions[0]
    ratios = [fractions[m - 1] / max(fractions[m], floor) for m in range(1, top + 1)]
    m = 1 + max(range(len(ratios)), key=ratios.__getitem__)
    return tuple(sorted(int(k) for k in order["frequency"].iloc[:m]))


def restricted_logits(logits: Float[Tensor, "a b c"], freqs: Iterable[int]
                      ) -> Float[Tensor, "a b c"]:
    """The logits' key-frequency directions (plus each c's constant) and nothing else."""
    x = logits.double()
    keep = x.mean((0, 1), keepdim=True).expand_as(x).clone()
    for k in freqs:
        keep += _key_part(x, k)
    return keep


def excluded_logits(logits: Float[Tensor, "a b c"], freqs: Iterable[int]
                    ) -> Float[Tensor, "a b c"]:
    """The logits with their key-frequency directions removed."""
    x = logits.double()
    out = x.clone()
    for k in freqs:
        out -= _key_part(x, k)
    return out


def answer_grid(task: ModularTask) -> Int[Tensor, "a b"]:
    """The answer c of every problem, as [a, b]."""
    p = check_modular(task).p
    return torch.tensor([[task.answer(a, b) for b in range(p)] for a in range(p)])


def grid_loss(logits: Float[Tensor, "a b c"], task: ModularTask,
              mask: Bool[Tensor, "a b"] | None = None) -> float:
    """Mean cross-entropy (over the residues) of the right answers on the masked pairs."""
    per = F.cross_entropy(logits.reshape(-1, task.p), answer_grid(task).reshape(-1),
                          reduction="none")
    return float(per[_cells(mask)].mean())


def grid_accuracy(logits: Float[Tensor, "a b c"], task: ModularTask,
                  mask: Bool[Tensor, "a b"] | None = None) -> float:
    """Share of the masked pairs whose top residue logit is the answer."""
    right = (logits.argmax(-1) == answer_grid(task)).reshape(-1)
    return float(right[_cells(mask)].double().mean())


def _cells(mask: Tensor | None) -> Tensor | slice:
    if mask is None:
        return slice(None)
    if not mask.any():
        raise ValueError("the mask selects no pairs")
    return mask.reshape(-1)


def split_mask(task: ModularTask, data: Dataset) -> Bool[Tensor, "a b"]:
    """The grid cells of the problems in `data` (e.g. a training split)."""
    mask = torch.zeros(task.p, task.p, dtype=torch.bool)
    mask[data.a, data.b] = True
    return mask


def neuron_frequencies(acts: Float[Tensor, "a b neuron"], freqs: Sequence[int]
                       ) -> tuple[pd.DataFrame, float]:
    """Per neuron: its best frequency (over all k) and the share of its centered variance
    that frequency's terms explain (cos/sin(w_k a), cos/sin(w_k b) and their products); and
    the share of all neurons' variance the terms of `freqs` explain together.

    Table columns: neuron, frequency, fve, key (whether the frequency is in `freqs`)."""
    p = acts.shape[0]
    basis, row_freqs, _ = fourier_basis(p)
    coef = torch.einsum("ia,jb,abn->ijn", basis, basis, acts.double())
    power = coef.pow(2)
    power[0, 0] = 0.0  # the neuron's mean
    total = power.sum((0, 1))
    fk = torch.tensor(row_freqs)
    n_freq = p // 2

    def terms(k: int) -> Tensor:  # [p, p] cells of frequency k: (k, 0), (0, k), (k, k)
        ik, i0 = fk == k, fk == 0
        return (ik[:, None] & (i0 | ik)[None, :]) | (i0[:, None] & ik[None, :])

    per_k = torch.stack([(power * terms(k)[:, :, None]).sum((0, 1))
                         for k in range(1, n_freq + 1)])  # [k, neuron]
    share = per_k / total.clamp_min(1e-300)
    best = share.argmax(0)
    keys = set(freqs)
    table = pd.DataFrame({"neuron": range(acts.shape[-1]),
                          "frequency": (best + 1).tolist(),
                          "fve": share.gather(0, best[None]).squeeze(0).tolist()})
    table["key"] = table["frequency"].isin(keys)
    dead = (total <= 0).numpy()  # a neuron constant over the grid has no frequency
    table.loc[dead, "frequency"] = 0
    table.loc[dead, ["fve", "key"]] = [math.nan, False]
    key_rows = [k - 1 for k in keys if 1 <= k <= n_freq]
    explained = float(per_k[key_rows].sum() / total.sum()) if total.sum() > 0 else math.nan
    return table, explained


def gini(values: Tensor | Sequence[float] | Sequence[int]) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, → 1 when one holds all."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten().sort().values
    if (x < 0).any():
        raise ValueError("gini needs non-negative values")
    n, total = x.numel(), float(x.sum())
    if n == 0 or total == 0:
        return math.nan
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def embedding_table(model: HookedModel, task: ModularTask) -> Float[Tensor, "p d_model"]:
    """The residue rows of W_E, in residue order."""
    return embedding(model).detach().cpu()[residue_ids(task)].double()


def neuron_logit_map(model: HookedModel, task: ModularTask, layer: int = 0
                     ) -> Float[Tensor, "c neuron"]:
    """W_L = W_out W_U restricted to the residue logits, transposed to [c, neuron]."""
    w_out = model.blocks[layer].mlp.W_out.detach().cpu().double()  # [neuron, d_model]
    w_u = model.W_U.detach().cpu().double()[:, residue_ids(task)]  # [d_model, c]
    return (w_out @ w_u).T


def fourier_norms(table: Float[Tensor, "p feature"]) -> Float[Tensor, " p"]:
    """Norm of each Fourier basis row's coefficients (constant, cos1, sin1, ...)."""
    basis, _, _ = fourier_basis(table.shape[0])
    return (basis @ table.double()).norm(dim=1)


@dataclass(frozen=True)
class GrokkingReport:
    """The Fourier picture of one model: spectra, key frequencies, losses, neurons."""

    key_frequencies: tuple[int, ...]
    logit_spectrum: pd.DataFrame  # frequency, period, fraction, key
    embedding_spectrum: pd.DataFrame  # compute_fourier_spectrum of W_E's residue rows, key
    losses: pd.DataFrame  # logits (full/restricted/excluded), split, loss, accuracy
    neurons: pd.DataFrame  # neuron, frequency, fve, key
    neuron_fve: float  # share of all neuron variance the key frequencies explain
    gini_embedding: float
    gini_neuron_logit: float


def _losses(logits: Tensor, task: ModularTask, freqs: Sequence[int],
            masks: dict[str, Tensor]) -> list[dict]:
    rows = []
    for kind, x in (("full", logits), ("restricted", restricted_logits(logits, freqs)),
                    ("excluded", excluded_logits(logits, freqs))):
        for split, mask in masks.items():
            rows.append({"logits": kind, "split": split, "loss": grid_loss(x, task, mask),
                         "accuracy": grid_accuracy(x, task, mask)})
    return rows


def compute_grokking_report(model: HookedModel, task: Task, train: Dataset | None = None,
                            *, freqs: Sequence[int] | None = None) -> GrokkingReport:
    """The Fourier picture of a model of a modular task. `train` marks the training pairs
    (the rest of the grid is the test split); `freqs` fixes the key frequencies (default:
    found from the logit spectrum)."""
    task = check_modular(task)
    if facts(model).attn_only:
        raise ValueError("the neuron analysis needs an MLP; this model is attention-only")
    logits = grid_logits(model, task)
    spectrum = logit_spectrum(logits)
    keys = tuple(freqs) if freqs is not None else key_frequencies(spectrum)
    if bad := [k for k in keys if not 1 <= k <= task.p // 2]:
        raise ValueError(f"key frequencies must be in 1..{task.p // 2}, got {bad}")
    masks = _masks(task, train)
    neurons, fve = neuron_frequencies(grid_neurons(model, task), keys)
    embedding_spectrum = compute_fourier_spectrum(embedding_table(model, task))
    return GrokkingReport(
        key_frequencies=keys, logit_spectrum=spectrum.assign(
            key=spectrum["frequency"].isin(keys)),
        embedding_spectrum=embedding_spectrum.assign(
            key=embedding_spectrum["frequency"].isin(keys)),
        losses=pd.DataFrame(_losses(logits, task, keys, masks)), neurons=neurons,
        neuron_fve=fve,
        gini_embedding=gini(fourier_norms(embedding_table(model, task))),
        gini_neuron_logit=gini(fourier_norms(neuron_logit_map(model, task))))


def _masks(task: ModularTask, train: Dataset | None) -> dict[str, Tensor]:
    if train is None:
        return {"all": torch.ones(task.p, task.p, dtype=torch.bool)}
    tm = split_mask(task, train)
    if tm.all():
        raise ValueError("the training split covers the whole grid: no test pairs")
    return {"train": tm, "test": ~tm}


def compute_progress(model: HookedModel, task: ModularTask, snapshots: dict[int, dict],
                     freqs: Sequence[int], train: Dataset, *, progress: bool = False
                     ) -> pd.DataFrame:
    """Progress measures at each snapshot {step: state dict} (loaded into `model` in turn;
    its own weights are restored afterwards): full, restricted and excluded loss and accuracy
    on both splits, the Gini of W_E's and W_L's Fourier norms, and the key frequencies'
    share of the logits. One row per (step, logits, split)."""
    from tqdm.auto import tqdm

    check_modular(task)
    keep = {k: v.detach().clone() for k, v in model.state_dict().items()}
    masks = _masks(task, train)
    rows = []
    try:
        for step in tqdm(sorted(snapshots), desc="progress", disable=not progress,
                         unit="snapshot"):
            model.load_state_dict(snapshots[step])
            logits = grid_logits(model, task)
            spectrum = logit_spectrum(logits).set_index("frequency")["fraction"]
            shared = {"step": step,
                      "key_fraction": float(spectrum.loc[list(freqs)].sum()),
                      "gini_embedding": gini(fourier_norms(embedding_table(model, task))),
                      "gini_neuron_logit": gini(fourier_norms(neuron_logit_map(model, task)))}
            rows += [{**shared, **r} for r in _losses(logits, task, freqs, masks)]
    finally:
        model.load_state_dict(keep)
    return pd.DataFrame(rows)
