"""The training directory: exact resume, refusals, the final model's spec, the splits a
saved config names."""

import json

import pytest
import torch

from arithinterp.checkpoints import load_model
from arithinterp.tasks import TaskSpec
from arithinterp.training.checkpoints import held_out_split, training_split
from arithinterp.training.config import TrainConfig
from arithinterp.training.loop import train
from arithinterp.training.plugins import ICoT
from tests.training.conftest import TINY, trained_weights


def test_resume_is_bitwise_equal_to_straight_training(tmp_path):
    train(TINY, tmp_path / "straight", device="cpu")
    half = train(TINY, tmp_path / "resumed", device="cpu", stop_after=12)
    assert half.steps == 12 and (tmp_path / "resumed" / "checkpoint").is_dir()
    # optimizer state is a plain torch file, readable without unpickling arbitrary objects
    torch.load(tmp_path / "resumed" / "checkpoint" / "optimizer.pt", weights_only=True)
    train(TINY, tmp_path / "resumed", device="cpu", resume=True)
    a, b = trained_weights(tmp_path / "straight"), trained_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    curve = (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert curve == (tmp_path / "resumed" / "metrics.jsonl").read_text()
    assert [json.loads(line)["step"] for line in curve.splitlines()] == [5, 10, 15, 20, 24]
    assert not (tmp_path / "resumed" / "checkpoint").exists()


def test_refuses_to_clobber_or_mix_configs(tmp_path):
    train(TINY, tmp_path / "run", device="cpu", stop_after=7)
    with pytest.raises(FileExistsError, match="not empty"):
        train(TINY, tmp_path / "run", device="cpu")
    other = TrainConfig(**{**TINY.__dict__, "lr": 5e-3})
    with pytest.raises(ValueError, match="differs"):
        train(other, tmp_path / "run", device="cpu", resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(TINY, tmp_path / "fresh", device="cpu", resume=True)


def test_final_checkpoint_records_the_spec_its_last_step_trained(tmp_path):
    cfg = TrainConfig(**{**TINY.__dict__, "task": TaskSpec(digits_a=2, digits_b=2, format="cot"),
                         "max_steps": 9, "curriculum": ICoT(tokens_per_stage=3, stage_steps=3)})
    train(cfg, tmp_path / "run", device="cpu")
    loaded = load_model(tmp_path / "run")
    assert loaded.task == cfg.spec_at(8) and loaded.task.cot_tokens_removed == 6


def test_training_split_is_what_the_model_saw_and_disjoint_from_its_test_split(modular_run):
    from arithinterp import schema
    from arithinterp.tasks import ModularTask

    path = modular_run.dir / schema.MODEL
    task = load_model(path).task
    seen = training_split(path, task)
    test = held_out_split(path, task)
    assert len(seen) == 159 and len(seen) + len(test) == 23 * 23
    assert not set(zip(seen.a.tolist(), seen.b.tolist(), strict=True)) & set(
        zip(test.a.tolist(), test.b.tolist(), strict=True))
    assert training_split(path, ModularTask(p=23, op="mul")) is None  # another task
