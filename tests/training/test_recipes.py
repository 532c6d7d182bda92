"""The zoo's recipes: named, refused by name, trained only where their model is missing."""

import pytest

from arithinterp.checkpoints import zoo_names
from arithinterp.tasks import ModularTask
from arithinterp.training import recipes
from arithinterp.training.recipes import grokking_config, unshipped_recipe, zoo_recipe


def test_every_recipe_is_shipped_and_an_unknown_name_is_refused_with_the_known_ones():
    assert set(recipes.ZOO_RECIPES) == {"add3-reversed", "add3-plain", "modadd-113"}
    assert set(recipes.ZOO_RECIPES) <= set(zoo_names())
    assert all(unshipped_recipe(name) is None for name in recipes.ZOO_RECIPES)
    assert unshipped_recipe("nothing") is None
    with pytest.raises(ValueError, match="no recipe for 'nothing'; recipes: add3-plain, "
                                         "add3-reversed, modadd-113"):
        zoo_recipe("nothing")


def test_a_recipe_whose_model_is_missing_is_the_one_to_train(monkeypatch):
    recipe = zoo_recipe("add3-reversed")
    monkeypatch.setitem(recipes.ZOO_RECIPES, "add3-elsewhere", recipe)
    assert unshipped_recipe("add3-elsewhere") is recipe


def test_the_grokking_recipe_is_full_batch_on_a_fraction_of_the_pairs():
    cfg = grokking_config(ModularTask(p=23), train_fraction=0.3, max_steps=100, seed=2)
    assert cfg.n_train + cfg.n_test == 23 * 23 and cfg.n_train == round(0.3 * 23 * 23)
    assert cfg.batch_size == cfg.n_train and cfg.eval_size == cfg.n_test
    assert cfg.weight_decay == 1.0 and cfg.decay == "all" and cfg.lr_schedule == "constant"
    assert cfg.model.seed == cfg.seed == 2 and cfg.model.n_layers == 1
