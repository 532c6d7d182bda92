"""Training loop: exact resume, determinism, plug-ins, and a real (slow) learning check."""

import json

import pytest
import torch
from conftest import BAD_CONFIG

from arithinterp.models import ModelSpec, load_model
from arithinterp.tasks import TaskSpec
from arithinterp.train import ExtraLoss, TrainConfig, answer_loss, lr_at, train

TINY = TrainConfig(
    task=TaskSpec(digits_a=2, digits_b=2, format="reversed"),
    model=ModelSpec(n_layers=1, d_model=32, n_heads=2, d_mlp=64),
    n_train=600, n_test=64, batch_size=32, max_steps=24, eval_every=5, eval_size=32,
    checkpoint_every=7, warmup_steps=4, target_accuracy=None,
)


def _weights(path):
    return load_model(path).model.state_dict()


def test_resume_is_bitwise_equal_to_straight_training(tmp_path):
    train(TINY, tmp_path / "straight", device="cpu")
    half = train(TINY, tmp_path / "resumed", device="cpu", stop_after=12)
    assert half.steps == 12 and (tmp_path / "resumed" / "checkpoint").is_dir()
    # optimizer state is a plain torch file, readable without unpickling arbitrary objects
    torch.load(tmp_path / "resumed" / "checkpoint" / "optimizer.pt", weights_only=True)
    train(TINY, tmp_path / "resumed", device="cpu", resume=True)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    curve = (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert curve == (tmp_path / "resumed" / "metrics.jsonl").read_text()
    assert [json.loads(line)["step"] for line in curve.splitlines()] == [5, 10, 15, 20, 24]
    assert not (tmp_path / "resumed" / "checkpoint").exists()


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    train(TINY, tmp_path / "a", device="cpu")
    train(TINY, tmp_path / "b", device="cpu")
    train(TrainConfig(**{**TINY.__dict__, "seed": 1}), tmp_path / "c", device="cpu")
    a, b, c = (_weights(tmp_path / x) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_refuses_to_clobber_or_mix_configs(tmp_path):
    train(TINY, tmp_path / "run", device="cpu", stop_after=7)
    with pytest.raises(FileExistsError, match="not empty"):
        train(TINY, tmp_path / "run", device="cpu")
    other = TrainConfig(**{**TINY.__dict__, "lr": 5e-3})
    with pytest.raises(ValueError, match="differs"):
        train(other, tmp_path / "run", device="cpu", resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(TINY, tmp_path / "fresh", device="cpu", resume=True)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_train": 0}, "n_train"), ({"lr": 0.0}, "lr"), ({"batch_size": 10_000}, "batch_size"),
    ({"target_accuracy": 1.5}, "target_accuracy"), ({"sampling": "zipf"}, "sampling"),
])
def test_bad_train_configs_name_the_field(kwargs, field):
    with pytest.raises(BAD_CONFIG, match=field):
        TrainConfig(**{**TINY.__dict__, **kwargs})


def test_config_json_round_trip_rejects_unknown_keys():
    assert TrainConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({**TINY.to_dict(), "epochs": 3})


def test_warmup_then_cosine_schedule():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(1e-3 * 0.55)
    assert lr_at(110, cfg) == pytest.approx(1e-4)


def test_answer_loss_ignores_prompt_positions():
    tokens = torch.tensor([[1, 5, 6, 7]])
    mask = torch.tensor([[False, False, True, True]])
    logits = torch.zeros(1, 4, 20)
    logits[0, 0, 9] = 50.0  # a wrong guess at a prompt position must not count
    assert answer_loss(logits, tokens, mask) == pytest.approx(torch.log(torch.tensor(20.0)))


class RunningSumProbe(ExtraLoss):
    """A linear head on the residual stream predicting each answer digit: a plug-in example."""

    hook_names = ("blocks.0.hook_resid_post",)

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(32, 1)
        self.calls = 0
        self.draws = []

    def forward(self, acts, batch, logits, gen):
        self.calls += 1
        noise = torch.rand(1, generator=gen)  # plug-ins draw from the loop's checkpointed RNG
        self.draws.append(float(noise))
        resid = acts["blocks.0.hook_resid_post"]
        assert resid.requires_grad  # the plug-in gets gradients, unlike run_with_cache
        pos = batch.spec.answer_positions()
        pred = self.head(resid[:, pos]).squeeze(-1)
        return torch.nn.functional.mse_loss(pred, batch.column_sums.float())


def test_extra_losses_and_curriculum_plug_in(tmp_path):
    cot = TrainConfig(**{**TINY.__dict__, "task": TaskSpec(digits_a=2, digits_b=2, format="cot"),
                         "max_steps": 10})
    seen = []

    def curriculum(step):
        seen.append(step)
        return TaskSpec(digits_a=2, digits_b=2, format="cot", cot_tokens_removed=min(step, 9) // 3)

    probe = RunningSumProbe()
    before = probe.head.weight.detach().clone()
    train(cot, tmp_path / "run", device="cpu", extra_losses=[probe], curriculum=curriculum,
          stop_after=6)
    assert probe.calls == 6 and not torch.equal(before, probe.head.weight)
    assert seen[:6] == list(range(6))
    probe2 = RunningSumProbe()
    train(cot, tmp_path / "run", device="cpu", extra_losses=[probe2], curriculum=curriculum,
          resume=True)
    assert probe2.calls == 4  # resumed at step 6 with the checkpointed head
    straight = RunningSumProbe()
    train(cot, tmp_path / "straight", device="cpu", extra_losses=[straight],
          curriculum=curriculum)
    assert probe.draws + probe2.draws == straight.draws  # the generator resumed too
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.slow
def test_learns_two_digit_addition(tmp_path):
    cfg = TrainConfig(
        task=TaskSpec(digits_a=2, digits_b=2, format="reversed"),
        model=ModelSpec(n_layers=2, d_model=64, n_heads=4, d_mlp=256),
        n_train=5000, n_test=500, batch_size=128, lr=3e-3, warmup_steps=20, max_steps=800,
        eval_every=50, eval_size=500, target_accuracy=0.97,
    )
    result = train(cfg, tmp_path / "add2", device="cpu")
    assert result.final["exact_match"] >= 0.95, result.final
    assert result.final["n"] == 500
