"""The zoo's recipes: the training config each shipped task model is (re)built with, and
the grokking setup they share with modular runs trained here. The shipped models themselves
live in ``arithinterp/zoo`` (`checkpoints.zoo_names`); a recipe whose model is missing there is
trained into the run that asks for it (stage `model`). The multiplication arms
(``mul3-*``) come from their study (`studies.multiplication.save_to_zoo`)."""

from __future__ import annotations

from arithinterp.checkpoints import zoo_names
from arithinterp.models import ModelSpec
from arithinterp.tasks import ModularTask, TaskSpec
from arithinterp.tasks.data import fraction_split
from arithinterp.training.config import TrainConfig


def grokking_config(task: ModularTask, *, train_fraction: float = 0.3, max_steps: int = 25_000,
                    seed: int = 0, snapshot_every: int | None = 250) -> TrainConfig:
    """Nanda et al. 2023's grokking setup for a modular task: one layer (d_model 128, 4 heads,
    ReLU MLP 512, no norm), full-batch AdamW (lr 1e-3, weight decay 1 on everything, betas
    0.9/0.98, constant after 10 warmup steps) on `train_fraction` of the p² pairs, the rest
    held out and scored in full every 100 steps; weights snapshotted for progress measures."""
    n_train, n_test = fraction_split(task, train_fraction)
    return TrainConfig(
        task=task,
        model=ModelSpec(n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512,
                        act_fn="relu", normalization=None, seed=seed),
        n_train=n_train, n_test=n_test, batch_size=n_train, lr=1e-3, weight_decay=1.0,
        decay="all", betas=(0.9, 0.98), lr_schedule="constant", warmup_steps=10,
        max_steps=max_steps, eval_every=100, eval_size=n_test, target_accuracy=None,
        checkpoint_every=1_000, snapshot_every=snapshot_every, flush_denormal=True, seed=seed)


ZOO_RECIPES: dict[str, TrainConfig] = {
    **{f"add3-{fmt}": TrainConfig(
        task=TaskSpec(op="add", digits_a=3, digits_b=3, format=fmt),
        model=ModelSpec(n_layers=2, d_model=128, n_heads=4, d_mlp=512, seed=0),
        n_train=50_000, n_test=2_000, batch_size=256, lr=1e-3, warmup_steps=50, decay="all",
        max_steps=3_000, eval_every=50, eval_size=1_000, target_accuracy=0.999, seed=0,
    ) for fmt in ("reversed", "plain")},
    "modadd-113": grokking_config(ModularTask(p=113, op="add"), max_steps=20_000),
}


def zoo_recipe(name: str) -> TrainConfig:
    """The training config a shipped zoo model is (re)built with."""
    if name not in ZOO_RECIPES:
        raise ValueError(f"no recipe for {name!r}; recipes: {', '.join(sorted(ZOO_RECIPES))}")
    return ZOO_RECIPES[name]


def unshipped_recipe(name: str) -> TrainConfig | None:
    """The recipe of a zoo model this installation does not ship (None: shipped, or no
    recipe), to train it where it is asked for."""
    if name in ZOO_RECIPES and name not in zoo_names():
        return ZOO_RECIPES[name]
    return None
