"""Training loop: answer-token loss, warmup + cosine AdamW, evals, checkpoints, exact resume.

The loop is a plain function of (TrainConfig, output directory). Two plug-in points let
later training modes reuse it without copying it:

- ``extra_losses``: ``ExtraLoss`` modules that read hooked activations (with gradients)
  and return a scalar added to the loss; their parameters are trained and checkpointed
  with the model's (e.g. a linear probe regressing running sums, Bai et al. 2025);
- ``curriculum``: a function step -> TaskSpec used to render the batches of that step
  (e.g. an implicit-CoT schedule raising ``cot_tokens_removed``).

Output directory: ``config.json`` + ``model.safetensors`` (the final model, see models.py),
``train_config.json``, ``metrics.jsonl`` (one line per eval) and ``metrics.json`` (final
held-out evaluation). While training runs, ``checkpoint/`` holds model, optimizer
(``torch.load(weights_only=True)``), generator state and data position; training N steps
straight equals N/2 steps, a resume, and N/2 more, bitwise, on the CPU.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from safetensors.torch import save as st_save
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp.evaluate import evaluate
from arithinterp.models import (
    HookedModel,
    ModelSpec,
    build_model,
    load_model,
    move_to,
    read_weights,
    resolve_device,
    save_model,
    state_tensors,
)
from arithinterp.runs import atomic_write_bytes, atomic_write_text
from arithinterp.tasks import Dataset, TaskSpec, make_dataset, make_splits
from arithinterp.tasks.data import SAMPLINGS, Sampling

CHECKPOINT_DIR = "checkpoint"
TRAIN_CONFIG_FILE = "train_config.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (with the seeds, so runs replay exactly)."""

    task: TaskSpec = field(default_factory=TaskSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    n_train: int = 50_000
    n_test: int = 2_000
    sampling: Sampling = "uniform"
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_steps: int = 2_000
    eval_every: int = 50
    eval_size: int = 500  # test problems scored at intermediate evals; the final eval uses all
    target_accuracy: float | None = 0.995  # stop once held-out exact match reaches this
    checkpoint_every: int = 100
    grad_clip: float | None = 1.0
    seed: int = 0  # data sampling and order; the model's init seed is model.seed

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "batch_size", "max_steps", "eval_every",
                     "eval_size", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size ({self.batch_size}) must be <= n_train ({self.n_train})")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ValueError("target_accuracy must be in (0, 1] or None, "
                             f"got {self.target_accuracy}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of to_dict; unknown keys raise ValueError naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown} (known: {sorted(known)})")
        data = dict(data)
        data["task"] = TaskSpec(**data.get("task", {}))
        data["model"] = ModelSpec(**data.get("model", {}))
        return cls(**data)


class ExtraLoss(torch.nn.Module):
    """An extra loss term read off hooked activations; subclasses set `hook_names`.

    ``forward(acts, batch, logits, gen)`` gets the activations of ``hook_names`` (with
    gradients) and the loop's seeded generator (checkpointed, so a resumed run draws the same
    numbers) and returns a scalar; it may own parameters, which are trained too.
    """

    hook_names: tuple[str, ...] = ()
    weight: float = 1.0


@dataclass(frozen=True)
class TrainResult:
    """Where the model went, how far it got and how well it does on held-out problems."""

    path: Path
    steps: int
    stopped_early: bool
    final: dict  # EvalResult.summary() on the full test split
    seconds: float


ZOO_RECIPES: dict[str, TrainConfig] = {
    f"add3-{fmt}": TrainConfig(
        task=TaskSpec(op="add", digits_a=3, digits_b=3, format=fmt),
        model=ModelSpec(n_layers=2, d_model=128, n_heads=4, d_mlp=512, seed=0),
        n_train=50_000, n_test=2_000, batch_size=256, lr=1e-3, warmup_steps=50,
        max_steps=3_000, eval_every=50, eval_size=1_000, target_accuracy=0.999, seed=0,
    )
    for fmt in ("reversed", "plain")
}


def zoo_recipe(name: str) -> TrainConfig:
    """The training config a shipped zoo model is (re)built with."""
    if name not in ZOO_RECIPES:
        raise ValueError(f"no recipe for {name!r}; recipes: {', '.join(sorted(ZOO_RECIPES))}")
    return ZOO_RECIPES[name]


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup to config.lr, then cosine decay to 10% of it at max_steps."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> Int[Tensor, " batch"]:
    """Example indices of a step: epoch-wise permutations seeded by (seed, epoch)."""
    per_epoch = n // batch_size
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[k * batch_size : (k + 1) * batch_size]


def answer_loss(
    logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"],
    loss_mask: Tensor,
) -> Float[Tensor, ""]:
    """Mean next-token cross-entropy over the positions in loss_mask (answer / CoT / eos)."""
    mask = loss_mask[:, 1:]
    per_tok = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(),
                              reduction="none").view_as(mask)
    return (per_tok * mask).sum() / mask.sum()


def run_with_activations(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], names: Sequence[str]
) -> tuple[Float[Tensor, "batch pos d_vocab"], dict[str, Tensor]]:
    """Logits plus the named activations, keeping gradients (run_with_cache detaches)."""
    acts: dict[str, Tensor] = {}

    def keep(act: Tensor, hook, *, name: str) -> Tensor:
        acts[name] = act
        return act

    hooks = [(n, lambda act, hook, n=n: keep(act, hook, name=n)) for n in names]
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks) if hooks else model(tokens)
    return logits, acts


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    extra_losses: Sequence[ExtraLoss] = (),
    curriculum: Callable[[int], TaskSpec] | None = None,
    device: str = "auto",
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a model per `config` into `out_dir`; `stop_after` stops (resumably) at that step."""
    out = Path(out_dir)
    ckpt = out / CHECKPOINT_DIR
    dev = str(resolve_device(device))
    _prepare_dir(out, config, resume=resume, overwrite=overwrite)
    t0 = time.perf_counter()

    train_set, test_set = make_splits(config.task, config.n_train, config.n_test, config.seed,
                                      sampling=config.sampling)
    rendered: dict[TaskSpec, tuple[Dataset, Dataset]] = {config.task: (train_set, test_set)}

    def data_for(step: int) -> tuple[Dataset, Dataset]:
        spec = curriculum(step) if curriculum else config.task
        if spec not in rendered:
            rendered[spec] = (make_dataset(spec, train_set.a, train_set.b),
                              make_dataset(spec, test_set.a, test_set.b))
        return rendered[spec]

    model = build_model(config.model, config.task, "cpu")
    extras = torch.nn.ModuleList(extra_losses)
    gen = torch.Generator().manual_seed(config.seed)  # for plug-ins that need randomness
    state = {"step": 0, "loss_sum": 0.0, "loss_count": 0, "stopped_early": False}
    opt_state = None
    if resume and ckpt.is_dir():
        model = load_model(ckpt).model
        saved = read_weights(ckpt / "extra.safetensors")
        gen.set_state(saved.pop("__generator__"))
        extras.load_state_dict(saved, strict=True)
        opt_state = torch.load(ckpt / "optimizer.pt", weights_only=True)
        state = json.loads((ckpt / "state.json").read_text())
        _truncate_metrics(out / "metrics.jsonl", state["step"])
    move_to(model, dev).train()
    extras.to(dev).train()
    params = list(model.parameters()) + list(extras.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    hook_names = sorted({n for e in extras for n in e.hook_names})

    bar = tqdm(total=config.max_steps, initial=state["step"], disable=not progress,
               desc="train", unit="step")
    while state["step"] < config.max_steps and not state["stopped_early"]:
        step = state["step"]
        train_data, test_data = data_for(step)
        batch = train_data[batch_indices(step, len(train_data), config.batch_size, config.seed)]
        tokens = batch.tokens.to(dev)
        logits, acts = run_with_activations(model, tokens, hook_names)
        loss = answer_loss(logits, tokens, batch.loss_mask.to(dev))
        for extra in extras:
            loss = loss + extra.weight * extra(acts, batch, logits, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        opt.step()
        state["step"] = step + 1
        state["loss_sum"] += float(loss.detach())
        state["loss_count"] += 1
        bar.update(1)

        if state["step"] % config.eval_every == 0 or state["step"] == config.max_steps:
            result = evaluate(model.eval(), test_data[: config.eval_size])
            model.train()
            record = {"step": state["step"], "loss": state["loss_sum"] / state["loss_count"],
                      "lr": lr_at(step, config), "exact_match": result.exact_match,
                      "digit_accuracy": result.digit_accuracy,
                      "tokens_seen": state["step"] * config.batch_size * tokens.shape[1]}
            _append_jsonl(out / "metrics.jsonl", record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{result.exact_match:.3f}")
            state["loss_sum"], state["loss_count"] = 0.0, 0
            if config.target_accuracy is not None and result.exact_match >= config.target_accuracy:
                state["stopped_early"] = True
        done = state["step"] >= config.max_steps or state["stopped_early"]
        if not done and (state["step"] % config.checkpoint_every == 0
                         or state["step"] == stop_after):
            _write_checkpoint(ckpt, model, config, opt, extras, gen, state)
        if state["step"] == stop_after and not done:
            bar.close()
            return TrainResult(out, state["step"], False, {}, time.perf_counter() - t0)
    bar.close()

    model.eval()
    final = evaluate(model, data_for(state["step"])[1])
    save_model(model, config.model, config.task, out)
    atomic_write_text(out / "metrics.json", json.dumps(
        {"steps": state["step"], "stopped_early": state["stopped_early"], **final.summary()},
        indent=2) + "\n")
    shutil.rmtree(ckpt, ignore_errors=True)
    return TrainResult(out, state["step"], state["stopped_early"], final.summary(),
                       time.perf_counter() - t0)


def _prepare_dir(out: Path, config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    cfg_text = json.dumps(config.to_dict(), indent=2) + "\n"
    cfg_file = out / TRAIN_CONFIG_FILE
    if resume:
        if not (out / CHECKPOINT_DIR).is_dir():
            raise FileNotFoundError(f"nothing to resume in {out}: no {CHECKPOINT_DIR}/ folder")
        if json.loads(cfg_file.read_text()) != json.loads(cfg_text):
            raise ValueError(f"cannot resume {out}: its {TRAIN_CONFIG_FILE} differs from this "
                             "config")
        return
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to "
                                  "replace it or resume=True (--resume) to continue it")
        if not cfg_file.is_file():
            raise FileExistsError(f"refusing to overwrite {out}: it is not a training directory")
        shutil.rmtree(out)
    atomic_write_text(cfg_file, cfg_text)


def _write_checkpoint(ckpt: Path, model: HookedModel, config: TrainConfig,
                      opt: torch.optim.Optimizer, extras: torch.nn.Module,
                      gen: torch.Generator, state: dict) -> None:
    """Write into a fresh folder, then swap it in, so a crash leaves the old checkpoint."""
    tmp = ckpt.with_name(CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, config.model, config.task, tmp)
    extra = {**state_tensors(extras), "__generator__": gen.get_state()}
    atomic_write_bytes(tmp / "extra.safetensors", st_save(extra))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    atomic_write_text(tmp / "state.json", json.dumps(state) + "\n")
    old = ckpt.with_name(CHECKPOINT_DIR + ".old")
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop eval records written after the checkpoint we resume from."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))

