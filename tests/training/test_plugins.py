"""Curricula and extra losses: registered by name, trained, resumed and replayed; the ICoT
schedule, the running-sum loss and task mixtures."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from arithinterp.checkpoints import load_model, read_weights
from arithinterp.models import build_model
from arithinterp.tasks import TaskSpec, make_dataset
from arithinterp.training.config import TrainConfig, with_mode
from arithinterp.training.loop import run_with_activations, train
from arithinterp.training.plugins import ExtraLoss, ExtraLossConfig, ICoT, Mixture
from tests.training.conftest import TINY, trained_weights


@ExtraLossConfig.register
@dataclass(frozen=True)
class ColumnSumProbe(ExtraLossConfig):
    """A plug-in registered by name: a linear head on the residual stream regressing each
    answer digit's column sum (a test-only stand-in for research losses)."""

    kind: ClassVar[str] = "test_column_sums"
    weight: float = 1.0

    def build(self, config):
        return ColumnSumHead(self.weight)


class ColumnSumHead(ExtraLoss):
    hook_names = ("blocks.0.hook_resid_post",)
    calls: ClassVar[list] = []  # (call, draw) of every instance, in order

    def __init__(self, weight):
        super().__init__()
        self.weight = weight
        self.head = torch.nn.Linear(32, 1)

    def forward(self, acts, batch, logits, gen):
        noise = torch.rand(1, generator=gen)  # plug-ins draw from the loop's checkpointed RNG
        ColumnSumHead.calls.append(float(noise))
        resid = acts["blocks.0.hook_resid_post"]
        assert resid.requires_grad  # the plug-in gets gradients, unlike run_with_cache
        pos = [p - 1 for p in batch.spec.answer_positions()]
        pred = self.head(resid[:, pos]).squeeze(-1)
        return torch.nn.functional.mse_loss(pred, batch.column_sums.float())


COT = TrainConfig(**{**TINY.__dict__, "task": TaskSpec(digits_a=2, digits_b=2, format="cot"),
                     "max_steps": 10, "curriculum": ICoT(tokens_per_stage=3, stage_steps=3),
                     "extra_losses": (ColumnSumProbe(),)})


def test_registered_plug_ins_train_resume_and_replay(tmp_path):
    ColumnSumHead.calls.clear()
    train(COT, tmp_path / "run", device="cpu", stop_after=6)
    assert len(ColumnSumHead.calls) == 6
    train(COT, tmp_path / "run", device="cpu", resume=True)
    resumed = list(ColumnSumHead.calls)
    ColumnSumHead.calls.clear()
    train(COT, tmp_path / "straight", device="cpu")
    assert resumed == ColumnSumHead.calls  # the generator resumed too
    a, b = trained_weights(tmp_path / "run"), trained_weights(tmp_path / "straight")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the trained plug-in parameters are saved beside the model
    extra = read_weights(tmp_path / "run" / "extra.safetensors")
    assert set(extra) == {"0.head.weight", "0.head.bias"}
    # the saved config names the curriculum and the loss, and replays them
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["curriculum"]["kind"] == "icot"
    assert saved["extra_losses"] == [{"kind": "test_column_sums", "weight": 1.0}]
    assert TrainConfig.from_dict(saved) == COT


def test_icot_removes_exactly_the_scheduled_chain_tokens():
    task = TaskSpec(op="mul", digits_a=2, digits_b=2, format="cot")
    cfg = TrainConfig(task=task, model=TINY.model, n_train=640, n_test=64, batch_size=32,
                      curriculum=ICoT(tokens_per_stage=4), max_steps=200)
    n_chain = task.max_cot_tokens
    per_epoch = 640 // 32
    removed = [cfg.spec_at(step).cot_tokens_removed for step in range(0, 200)]
    assert removed[:per_epoch] == [0] * per_epoch
    assert [removed[e * per_epoch] for e in range(8)] == [min(4 * e, n_chain) for e in range(8)]
    assert max(removed) == n_chain and cfg.spec_at(199).cot_tokens_removed == n_chain
    resets = [s for s in range(200) if cfg.curriculum.resets_optimizer(s, cfg)]
    assert resets == [e * per_epoch for e in range(1, -(-n_chain // 4) + 1)]
    # the loss mask follows the visible tokens: every target after '=' and nothing before
    for step in (0, per_epoch, 3 * per_epoch):
        spec = cfg.spec_at(step)
        data = make_dataset(spec, torch.tensor([12, 47]), torch.tensor([34, 38]))
        full = TaskSpec(op="mul", digits_a=2, digits_b=2, format="cot").render(12, 34)
        assert spec.render(12, 34) == full[: spec.prompt_len - 1] + \
            full[spec.prompt_len - 1 + spec.cot_tokens_removed:]
        assert data.loss_mask[:, spec.prompt_len:].all() and not \
            data.loss_mask[:, : spec.prompt_len].any()
        assert data.tokens.shape[1] == spec.seq_len == full_len(task) - spec.cot_tokens_removed


def full_len(task):
    return task.seq_len


def test_smoothing_removes_more_tokens_at_seeded_random_steps():
    task = TaskSpec(op="mul", digits_a=2, digits_b=2, format="cot")
    cfg = TrainConfig(task=task, model=TINY.model, n_train=640, n_test=64, batch_size=32,
                      curriculum=ICoT(tokens_per_stage=4, smoothing=1.0, max_extra=3))
    removed = [cfg.spec_at(s).cot_tokens_removed for s in range(60)]
    scheduled = [cfg.curriculum.removed_at(s, cfg) for s in range(60)]
    assert all(0 <= r - s <= 3 for r, s in zip(removed, scheduled, strict=True))
    assert removed != scheduled and removed == [cfg.spec_at(s).cot_tokens_removed
                                                for s in range(60)]
    first_stage = 640 // 32  # the full chain is trained unsmoothed
    assert removed[:first_stage] == [0] * first_stage
    assert [cfg.eval_spec(s).cot_tokens_removed for s in range(60)] == scheduled


def test_aux_with_zero_weight_trains_exactly_like_sft(tmp_path):
    task = TaskSpec(op="mul", digits_a=2, digits_b=2, format="reversed")
    sft = TrainConfig(**{**TINY.__dict__, "task": task, "max_steps": 8})
    aux = with_mode(sft, "aux", aux_weight=0.0)
    assert aux.mode == "aux" and sft.mode == "sft"
    train(sft, tmp_path / "sft", device="cpu")
    train(aux, tmp_path / "aux", device="cpu")
    a, b = trained_weights(tmp_path / "sft"), trained_weights(tmp_path / "aux")
    assert all(torch.equal(a[k], b[k]) for k in a)
    head = read_weights(tmp_path / "aux" / "extra.safetensors")
    assert {k.split(".", 1)[1] for k in head} >= {"probe.weight", "probe.bias"}
    # with weight 1 the head learns and the model changes
    train(with_mode(sft, "aux", aux_weight=1.0), tmp_path / "aux1", device="cpu")
    c = trained_weights(tmp_path / "aux1")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_aux_gradients_reach_only_the_model_and_the_head():
    task = TaskSpec(op="mul", digits_a=2, digits_b=2, format="reversed")
    cfg = with_mode(TrainConfig(**{**TINY.__dict__, "task": task}), "aux")
    model = build_model(cfg.model, task)
    head = cfg.extra_losses[0].build(cfg)
    data = make_dataset(task, torch.tensor([12, 47]), torch.tensor([34, 38]))
    _, acts = run_with_activations(model, data.tokens, head.hook_names)
    head(acts, data, torch.zeros(0), torch.Generator()).backward()
    assert all(p.grad is not None for p in head.probe.parameters())
    touched = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    # the head reads resid_mid of the (only) layer: what comes after it gets no gradient
    downstream = ("ln2", "mlp", "ln_out", "head.")
    assert any("tok_embed" in n for n in touched) and any(".attn." in n for n in touched)
    assert not [n for n in touched if any(d in n for d in downstream)], touched


def test_a_mixture_interleaves_tasks_and_evaluates_the_main_one(tmp_path):
    add = TaskSpec(digits_a=2, digits_b=2)
    sub = TaskSpec(op="sub", digits_a=2, digits_b=2, signed=True)
    cfg = TrainConfig(**{**TINY.__dict__, "task": add, "max_steps": 9,
                         "curriculum": Mixture(tasks=(sub,), weights=(2, 1))})
    assert [cfg.spec_at(s).op for s in range(6)] == ["add", "add", "sub"] * 2
    assert {cfg.eval_spec(s) for s in range(6)} == {add}
    train(cfg, tmp_path / "mix", device="cpu")
    assert load_model(tmp_path / "mix").task == add
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for tasks, message in (((TaskSpec(op="sub", digits_a=2, digits_b=2),), "signed=True"),
                           ((TaskSpec(digits_a=3, digits_b=2),), "other operands")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**{**TINY.__dict__, "task": add,
                           "curriculum": Mixture(tasks=tasks, weights=(2, 1))})
    with pytest.raises(ValueError, match="one weight more"):
        Mixture(tasks=(sub,), weights=(1,))
