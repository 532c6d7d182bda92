"""The localization suite: prompts from the held-out split, the metric's default digit, the
accuracy warning and only_correct, pairs dropped said out loud, grids named in the config; a
plan's top components patched exactly equal the full grid's cells, on any prompt source."""

import pytest
import torch

from arithinterp import schema
from arithinterp.analysis.sources import TaskSource
from arithinterp.analysis.suite import (
    GridConfig,
    LocalizeConfig,
    LocalizePlan,
    compute_localization,
    localize_task,
    make_pairs,
)
from arithinterp.checkpoints import load_model
from arithinterp.core.metrics import answer_metric
from arithinterp.evaluate import teacher_forced_correct
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import TaskSpec, make_dataset, make_splits
from arithinterp.training.checkpoints import held_out_split
from arithinterp.training.config import TrainConfig
from arithinterp.training.loop import train

SMALL = dict(n_pairs=48, n_eval=32, n_random=1, save_cache=False,
             grids=(GridConfig("z", by_pos=False), GridConfig("mlp_out")))


@pytest.fixture(scope="module")
def half_trained(tmp_path_factory):
    """A 2-digit adder trained to roughly half its problems (seeded, ~5 s)."""
    config = TrainConfig(task=TaskSpec(digits_a=2, digits_b=2),
                         model=ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64),
                         n_train=1000, n_test=400, batch_size=64, max_steps=250, warmup_steps=2,
                         eval_every=250, eval_size=50, checkpoint_every=1000, lr=3e-3,
                         target_accuracy=None)
    path = tmp_path_factory.mktemp("half") / "model"
    train(config, path, device="cpu", progress=False)
    return load_model(path)


def test_pairs_come_from_the_held_out_split(half_trained):
    pool = held_out_split(half_trained.path, half_trained.task)
    result = localize_task(half_trained.model, half_trained.task,
                                  LocalizeConfig(**SMALL), pool=pool, progress=False)
    pairs = result.tensors[schema.PAIRS]
    held_out = set(zip(pool.a.tolist(), pool.b.tolist(), strict=True))
    train_set, _ = make_splits(half_trained.task, 1000, 400, seed=0)
    trained_on = set(zip(train_set.a.tolist(), train_set.b.tolist(), strict=True))
    keys = schema.pair_keys("clean")
    clean = set(zip(pairs[keys["a"]].tolist(), pairs[keys["b"]].tolist(), strict=True))
    assert clean <= held_out and not clean & trained_on
    assert result.summary["prompts"] == "held_out"
    with pytest.raises(ValueError, match="needs the model's held-out problems"):
        localize_task(half_trained.model, half_trained.task, LocalizeConfig(**SMALL))


def test_only_correct_keeps_the_pairs_the_model_answers_and_says_how_many(half_trained):
    pool = held_out_split(half_trained.path, half_trained.task)
    plain = localize_task(half_trained.model, half_trained.task,
                                 LocalizeConfig(**SMALL), pool=pool, progress=False)
    acc = plain.summary["clean_accuracy"]
    assert 0.2 < acc < 0.8  # a model that gets some problems wrong
    assert not any("only_correct kept" in w for w in plain.summary["warnings"])
    kept = localize_task(half_trained.model, half_trained.task,
                                LocalizeConfig(only_correct=True, **SMALL), pool=pool,
                                progress=False)
    n = kept.summary["n_pairs"]
    assert 0 < n < plain.summary["n_pairs"]
    assert any(f"only_correct kept {n} of {plain.summary['n_pairs']} pairs" in w
               for w in kept.summary["warnings"])
    t = kept.tensors[schema.PAIRS]
    task = half_trained.task
    clean, corrupt = (make_dataset(task, t[k["a"]], t[k["b"]])
                      for k in map(schema.pair_keys, schema.PAIR_SIDES))
    assert teacher_forced_correct(half_trained.model, clean).all()
    assert teacher_forced_correct(half_trained.model, corrupt).all()


def test_a_model_that_cannot_do_the_task_is_flagged(demo_runs):
    _, trained = demo_runs  # 20 steps: it answers almost nothing
    loaded = load_model(trained)
    result = localize_task(loaded.model, loaded.task, LocalizeConfig(**SMALL),
                                  pool=held_out_split(loaded.path, loaded.task), progress=False)
    assert result.summary["clean_accuracy"] < 0.5
    assert any("cannot do the task" in w and "only_correct" in w
               for w in result.summary["warnings"])


def test_a_flipped_carry_is_measured_where_it_flows_in_and_dropped_pairs_are_reported():
    task = TaskSpec(op="add", digits_a=3, digits_b=3)
    model = build_model(ModelSpec(n_layers=1, d_model=16, n_heads=2, d_mlp=32), task).eval()
    config = LocalizeConfig(corrupt="carry", position=2, prompts="fresh", **SMALL)
    result = localize_task(model, task, config, progress=False)
    assert result.summary["answer_digit"] == 2 and result.summary["metric"] == "logit_diff(c2)"
    assert config.key == "localize/carry2"
    mul = TaskSpec(op="mul", digits_a=2, digits_b=2)
    model = build_model(ModelSpec(n_layers=1, d_model=16, n_heads=2, d_mlp=32), mul).eval()
    result = localize_task(model, mul, LocalizeConfig(
        n_pairs=256, digit=1, prompts="fresh", **{k: v for k, v in SMALL.items()
                                                   if k != "n_pairs"}), progress=False)
    used = result.summary["n_pairs"]
    assert used < 256 and result.summary["n_requested"] == 256
    assert any(f"used {used} of the 256 pairs drawn" in w for w in result.summary["warnings"])


def test_only_the_configured_grids_are_computed(tiny_model, tiny_task):
    config = LocalizeConfig(prompts="fresh", paths=False, **SMALL)
    result = localize_task(tiny_model, tiny_task, config, progress=False)
    table = result.tables[schema.PATCHING]
    grids = set(zip(table["site"], table["by_pos"], strict=True))
    assert grids == {("z", False), ("mlp_out", True)}
    assert set(table["method"]) == {"exact"} and schema.ATTRIBUTION not in result.tables
    assert schema.PATHS not in result.tables
    values = result.tensors[schema.PATCHING_VALUES]
    assert set(values) == {f"{g}{s}" for g in ("z_all_denoise", "mlp_out_pos_denoise")
                           for s in ("", ".normalized", ".clean", ".corrupted")}
    # per-prompt normalization uses each prompt's own baselines
    v, c, k = (values[f"z_all_denoise{s}"] for s in ("", ".clean", ".corrupted"))
    expected = (v - k) / (c - k)
    ok = (c - k).abs() >= 1e-4
    torch.testing.assert_close(values["z_all_denoise.normalized"][..., ok], expected[..., ok])


def test_the_top_components_patched_exactly_equal_the_full_grids_cells(tiny_model, tiny_task):
    pairs, digit, _ = make_pairs(tiny_task, LocalizeConfig(n_pairs=32, prompts="fresh"))
    metric = answer_metric(pairs, digit)
    source, heads = TaskSource(tiny_task), GridConfig("z", by_pos=False, attribution=True)
    runs = [compute_localization(tiny_model, source, pairs, metric, LocalizePlan(
        ((heads, exact),), n_exact=3, agreement=False, paths="top", top_k=2, n_random=1),
        eval_prompts=pairs.clean, progress=False) for exact in ("all", "top")]
    full, top = (r.tables[schema.PATCHING].set_index("component") for r in runs)
    estimate = runs[1].tables[schema.ATTRIBUTION].set_index("component")["normalized"]
    assert list(top.index) == list(estimate.abs().sort_values(ascending=False).index[:3])
    for name, row in top.iterrows():  # one hooked run per head against the batched grid
        assert row["value"] == pytest.approx(full.loc[name, "value"], abs=1e-5)
        assert row["normalized"] == pytest.approx(full.loc[name, "normalized"], abs=1e-4)
    assert set(runs[1].tables[schema.RANKING]["component"]) == set(top.index)
    assert list(runs[1].tables[schema.PATHS]["sender"]) == [c.name for c in runs[1].selected]
    assert schema.PATCHING_VALUES in runs[0].tensors and schema.KNOCKOUT in runs[1].tables
    with pytest.raises(ValueError, match="exact 'top' ranks heads"):
        LocalizePlan(((GridConfig("resid_pre", attribution=True), "top"),))
    with pytest.raises(ValueError, match="exact 'top' ranks heads"):
        LocalizePlan(((GridConfig("z", by_pos=False), "top"),))  # nothing estimates it


@pytest.mark.parametrize("kwargs, message", [
    ({"digit": 3}, "digit must be in 0..1"), ({"corrupt": "carry", "position": 0}, "position"),
    ({"answer_digit": 3}, "answer_digit must be in 0..2"),
])
def test_bad_experiments_are_refused_before_anything_runs(kwargs, message, tiny_task):
    with pytest.raises(ValueError, match=message):
        LocalizeConfig(**kwargs).check(tiny_task)
    with pytest.raises(ValueError, match="name"):
        LocalizeConfig(name="a/b")
