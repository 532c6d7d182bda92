"""Stage `finetune`: every arm and seed from the same base, scored before and after, with
only the changed tensors kept; bad selections refused before anything trains."""

import pytest
import torch

from arithinterp import schema
from arithinterp.checkpoints import load_model
from arithinterp.finetune import Schedule, component_masks
from arithinterp.runs import RunDir
from arithinterp.stages.finetune import FinetuneConfig, Selection, check
from arithinterp.stages.job import run_on
from tests.conftest import BAD_CONFIG


def test_the_comparison_has_every_arm_draw_seed_and_task(quick_scenario):
    run = quick_scenario
    table = run.load(schema.FINETUNE_COMPARISON, "finetune/sub")
    arms = table.drop_duplicates(["arm", "draw", "seed"])
    assert sorted(zip(arms["arm"], arms["draw"], strict=True)) == [
        ("full", 0), ("none", 0), ("random", 0), ("random", 1), ("selected", 0)]
    assert set(table["role"]) == {"target", "other"} and len(table) == 10
    selected = run.load(schema.LOCALIZE_SUMMARY, "localize/sub-a1")
    ranked = run.load(schema.RANKING, "localize/sub-a1")
    top = ranked[ranked["kind"] == "head"]["component"].head(2).tolist()
    assert table[table["arm"] == "selected"]["components"].iloc[0] == ",".join(top)
    assert selected["task"] == "sub2x2-reversed-signed"
    none = table[table["arm"] == "none"]
    assert (none["change"] == 0).all() and (none["n_params"] == 0).all()
    randoms = table[(table["arm"] == "random") & (table["role"] == "target")]["components"]
    assert randoms.nunique() == 2 and not set(randoms) & {",".join(top)}
    # the numbers come from real runs: "after" is a fresh evaluation of the fine-tuned model
    weights = run.load(schema.FINETUNE_WEIGHTS, "finetune/sub")
    model = load_model(run.dir)
    base = model.model.state_dict()
    changed = {k.split("/", 1)[1]: v for k, v in weights.items() if k.startswith("selected.0.s0/")}
    masks = component_masks(model.model, top)
    assert set(changed) == set(masks)
    for key, value in changed.items():
        assert torch.equal(value[~masks[key]], base[key][~masks[key]])
    assert {k.split("/", 1)[0] for k in weights} == {"selected.0.s0", "random.0.s0",
                                                     "random.1.s0", "full.0.s0"}
    curves = run.load(schema.FINETUNE_CURVES, "finetune/sub")
    assert set(curves["arm"]) == {"selected", "random", "full"}
    assert curves["exact_match"].notna().sum() >= 4 * 5  # step 0, then every 10 steps of 40
    start = curves[curves["step"] == 0]  # every arm's curve starts at the base model
    assert len(start) == 4 and start["exact_match"].nunique() == 1 and start["loss"].isna().all()


def test_bad_selections_are_refused_before_training(quick_scenario, tmp_path, ctx):
    run = quick_scenario
    loaded = load_model(run.dir)
    for select, message in ((Selection(components=("L9H0",)), "is not in this model"),
                            (Selection(experiment="nope"), "no ranking of localization"),
                            (Selection(experiment="sub-a1", top_k=None, threshold=99.0),
                             "reaches")):
        with pytest.raises(ValueError, match=message):
            check(FinetuneConfig(select=select), run, loaded)
    with pytest.raises(ValueError, match="duplicates"):
        Selection(components=("L0H1", "L0H1"))
    with pytest.raises(ValueError, match="exactly one of top_k and threshold"):
        Selection(experiment="a1", top_k=None)
    with pytest.raises(BAD_CONFIG, match="arms"):
        FinetuneConfig(arms=("best",))
    with pytest.raises(ValueError, match="distinct random sets"):
        check(FinetuneConfig(select=Selection(components=tuple(
            f"L{L}H{h}" for L in range(2) for h in range(4))[:7]), n_random=2), run, loaded)
    before = set(tmp_path.iterdir())
    with pytest.raises(ValueError, match="no ranking"):
        run_on(str(run.dir / "model"), [FinetuneConfig(schedule=Schedule(max_steps=2))],
               runs_dir=tmp_path, name="x", ctx=ctx)
    assert RunDir.open(tmp_path / "x").status == "failed"
    assert set(tmp_path.iterdir()) - before == {tmp_path / "x"}
