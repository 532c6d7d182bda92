"""Stage `train`: trains into the run's model/ folder and resumes an interrupted run."""

import torch

from arithinterp import schema
from arithinterp.checkpoints import load_model
from arithinterp.runs import RunDir
from arithinterp.stages.job import run_job
from arithinterp.training.config import TrainConfig
from arithinterp.training.loop import train


def test_training_writes_the_model_and_its_curve_and_resumes_exactly(tmp_path, ctx, tiny_task,
                                                                      tiny_spec):
    config = TrainConfig(task=tiny_task, model=tiny_spec, n_train=320, n_test=64,
                         batch_size=32, max_steps=12, eval_every=4, eval_size=32,
                         checkpoint_every=4, target_accuracy=None)
    straight = run_job(tmp_path, "straight", [config], ctx=ctx).run
    curve = straight.load(schema.TRAINING_CURVE, schema.MODEL)
    assert sorted(curve["step"].unique()) == [4, 8, 12] and curve["digit_loss"].notna().all()
    assert straight.stage_summary("model")["mode"] == "sft"
    # a run interrupted after 6 steps (its process gone) resumes from the checkpoint
    first = RunDir.create(tmp_path, "resumed", config={"job": [{"stage": "train", "config":
                                                                config.to_dict()}]},
                          seeds={"model": 0})
    first.start_stage("model", "train")
    train(config, first.dir / "model", device="cpu", progress=False, stop_after=6)
    first.close()
    resumed = run_job(tmp_path, "resumed", [config], ctx=ctx).run
    a, b = (load_model(r.dir).model.state_dict() for r in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.load(schema.TRAIN_LOG, schema.MODEL) == \
        straight.load(schema.TRAIN_LOG, schema.MODEL)
    assert not (resumed.dir / "model" / schema.CHECKPOINT_DIR).exists()
