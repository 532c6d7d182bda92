"""Training loop: exact resume, determinism, plug-ins, and a real (slow) learning check."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from arithinterp.models import ModelSpec, build_model, load_model, read_weights
from arithinterp.tasks import TaskSpec, make_dataset
from arithinterp.train import (
    ExtraLoss,
    ExtraLossConfig,
    ICoT,
    RunningSumLoss,
    TrainConfig,
    answer_loss,
    held_out_split,
    lr_at,
    parameter_groups,
    run_with_activations,
    train,
    training_split,
    with_mode,
)
from tests.conftest import BAD_CONFIG

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
    with pytest.raises(ValueError, match=r"unknown keys \['epochs'\]"):
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
    a, b = _weights(tmp_path / "run"), _weights(tmp_path / "straight")
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
    a, b = _weights(tmp_path / "sft"), _weights(tmp_path / "aux")
    assert all(torch.equal(a[k], b[k]) for k in a)
    head = read_weights(tmp_path / "aux" / "extra.safetensors")
    assert {k.split(".", 1)[1] for k in head} >= {"probe.weight", "probe.bias"}
    # with weight 1 the head learns and the model changes
    train(with_mode(sft, "aux", aux_weight=1.0), tmp_path / "aux1", device="cpu")
    c = _weights(tmp_path / "aux1")
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


def test_final_checkpoint_records_the_spec_its_last_step_trained(tmp_path):
    cfg = TrainConfig(**{**COT.__dict__, "extra_losses": (), "max_steps": 9})
    train(cfg, tmp_path / "run", device="cpu")
    loaded = load_model(tmp_path / "run")
    assert loaded.task == cfg.spec_at(8) and loaded.task.cot_tokens_removed == 6


def test_weight_decay_only_where_it_belongs(tiny_model):
    named = list(tiny_model.named_parameters())
    groups = parameter_groups(named, 0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    for name, p in named:
        assert (id(p) in decayed) == (p.ndim >= 2), name  # biases and norm weights: no decay
    frozen = named[0][1]
    frozen.requires_grad_(False)
    try:
        kept = {id(p) for g in parameter_groups(named, 0.1) for p in g["params"]}
        assert id(frozen) not in kept  # frozen: no update, no decay
    finally:
        frozen.requires_grad_(True)
    assert [len(g["params"]) for g in parameter_groups(named, 0.1, "all")] == [len(named)]


@pytest.mark.parametrize("kwargs, message", [
    ({"task": TaskSpec(op="mul", digits_a=2, digits_b=2), "n_train": 8100},
     r"n_train \(8100\) \+ n_test \(64\) exceed the 8100 problems"),
    ({"curriculum": ICoT()}, "curriculum icot trains format 'cot'"),
    ({"extra_losses": (RunningSumLoss(),)}, "only multiplication has"),
])
def test_configs_that_cannot_train_are_refused_before_anything_is_written(tmp_path, kwargs,
                                                                          message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**TINY.__dict__, **kwargs})
    with pytest.raises(ValueError, match="weight"):
        RunningSumLoss(weight=-1.0)


def test_default_training_set_fits_the_task():
    small = TrainConfig(task=TaskSpec(op="mul", digits_a=2, digits_b=2), n_test=2000)
    assert small.n_train is None and small.train_size == 8100 - 2000
    assert TrainConfig().train_size == 50_000


def test_unknown_and_wrongly_typed_nested_keys_are_one_line_errors():
    bad = TINY.to_dict()
    for data, message in (({**bad, "task": 3}, r"training config.task: expected an object"),
                          ({**bad, "task": {**bad["task"], "digitz": 3}},
                           r"training config.task: unknown keys \['digitz'\]"),
                          ({**bad, "curriculum": {"kind": "nope"}},
                           r"curriculum.kind: expected one of"),
                          ({**bad, "lr": "fast"}, r"training config.lr: expected a number")):
        with pytest.raises(ValueError, match=message) as e:
            TrainConfig.from_dict(data)
        assert "\n" not in str(e.value)


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


@pytest.mark.slow
def test_a_tiny_model_learns_two_digit_multiplication_with_the_full_chain(tmp_path):
    cfg = with_mode(TrainConfig(
        task=TaskSpec(op="mul", digits_a=2, digits_b=2, format="reversed"),
        model=ModelSpec(n_layers=2, d_model=64, n_heads=4, d_mlp=256), n_train=4000,
        n_test=500, batch_size=128, lr=3e-3, warmup_steps=20, max_steps=500, eval_every=100,
        eval_size=500, target_accuracy=0.95), "cot")
    result = train(cfg, tmp_path / "mul2-cot", device="cpu")
    assert result.final["exact_match"] >= 0.9, result.final  # 0.99 at step 400 when written


def test_a_mixture_interleaves_tasks_and_evaluates_the_main_one(tmp_path):
    from arithinterp.train import Mixture

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


def test_kept_positions_are_folded_into_the_saved_model(tmp_path):
    from arithinterp.models import close_position_gap

    task = TaskSpec(op="mul", digits_a=2, digits_b=2, format="cot")
    cfg = TrainConfig(**{**TINY.__dict__, "task": task, "max_steps": 12,
                         "curriculum": ICoT(tokens_per_stage=7, stage_steps=3,
                                            full_chain_steps=4, keep_positions=True)})
    assert cfg.spec_at(11).cot_tokens_removed == task.max_cot_tokens == 14
    model = build_model(cfg.model, task).eval()
    spec = cfg.spec_at(11)
    data = make_dataset(spec, torch.tensor([12, 47]), torch.tensor([34, 38]))
    with torch.inference_mode(), model.hooks(fwd_hooks=cfg.position_hooks(model, spec)):
        gapped = model(data.tokens)
    close_position_gap(model, spec.prompt_len, 14)
    with torch.inference_mode():
        plain = model(data.tokens)
    torch.testing.assert_close(gapped, plain, atol=1e-6, rtol=0)
    # training with kept positions saves a plain model whose metrics reproduce
    train(cfg, tmp_path / "keep", device="cpu")
    saved = load_model(tmp_path / "keep")
    assert saved.task == spec
    recorded = json.loads((tmp_path / "keep" / "metrics.json").read_text())
    from arithinterp.evaluate import evaluate
    from arithinterp.train import held_out_split

    again = evaluate(saved.model, held_out_split(tmp_path / "keep", spec))
    assert again.exact_match == recorded["exact_match"]
    assert again.digit_accuracy == recorded["digit_accuracy"]
    with pytest.raises(ValueError, match="learned positions"):
        TrainConfig(**{**cfg.__dict__, "model": ModelSpec(n_layers=1, d_model=32, n_heads=2,
                                                          positional="rotary")})


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
