"""A sweep's results table, read from its trials' runs."""

from arithinterp.sweeps.results import results_table
from arithinterp.sweeps.spec import Sweep
from tests.sweeps.test_spec import BASE


def test_trials_without_a_run_are_pending_and_refused_configs_failed(tmp_path):
    sweep = Sweep(name="s", base=BASE, grid={"n_heads": [2, 3]})
    table = results_table(sweep, tmp_path)
    assert table["trial"].tolist() == ["s.n_heads-2", "s.n_heads-3"]
    assert table["status"].tolist() == ["pending", "failed"]
    assert table["run"][0] == "s.n_heads-2" and table["run"].isna().tolist() == [False, True]
    assert table["error"].isna()[0] and "divisible by n_heads (3)" in table["error"][1]
    assert table["n_heads"].tolist() == [2, 3]
    assert table["config_hash"].isna()[1] and len(table["config_hash"][0]) == 12


def test_a_finished_trial_reports_its_training(tiny_sweep):
    runs, table = tiny_sweep
    sweep = Sweep(name="sw", base=BASE, grid={"n_train": [40, 80], "seed": [0, 1]}, stages=())
    assert table["status"].tolist() == ["done"] * 4
    assert {"exact_match", "steps", "steps_to_target", "wall_seconds", "acc_c0"} <= set(table)
    assert (table["steps"] == 20).all()
    # runs of these names that hold another job (BASE is not the fixture's base config)
    assert results_table(sweep, runs)["status"].tolist() == ["unfinished"] * 4
