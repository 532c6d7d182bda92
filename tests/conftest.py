"""Shared fixtures: one thread (tiny tensors run far slower on two), tiny models, quiet bars."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from jaxtyping import TypeCheckError  # noqa: E402

torch.set_num_threads(1)

# A bad config value is a ValueError naming the field; under the runtime type checker the
# tests run with, a value outside a Literal is caught earlier, as a TypeCheckError naming it.
BAD_CONFIG = (ValueError, TypeCheckError)


@pytest.fixture(scope="session")
def tiny_task():
    from arithinterp.tasks import TaskSpec

    return TaskSpec(op="add", digits_a=2, digits_b=2, format="reversed")


@pytest.fixture(scope="session")
def tiny_spec():
    from arithinterp.models import ModelSpec

    return ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_spec, tiny_task):
    from arithinterp.models import build_model

    return build_model(tiny_spec, tiny_task).eval()


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """A tiny GPT-2 built from a config and saved locally: stands in for a hub model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate("0123456789+=*- ")}
    vocab["<unk>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<unk>",
                                   eos_token="<unk>")
    cfg = GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=32, n_layer=2, n_head=4)
    torch.manual_seed(0)  # the HF initialiser reads the global generator
    path = tmp_path_factory.mktemp("gpt") / "gpt"
    GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def ctx():
    from arithinterp.stages.base import Context

    return Context(device="cpu", progress=False)


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory, tiny_task, tiny_spec, ctx):
    """Runs made by the real jobs on a tiny model trained for a few steps: `trained` (the
    training run), `tiny` (model, evaluate, localize, probes, fourier) and `bare` (model and
    evaluate only). Returns (runs_dir, model_run_dir)."""
    from arithinterp.analysis.suite import LocalizeConfig
    from arithinterp.stages.job import demo_job, run_job
    from arithinterp.train import TrainConfig

    root = tmp_path_factory.mktemp("demo-runs")
    config = TrainConfig(task=tiny_task, model=tiny_spec, n_train=1_000, n_test=100,
                         batch_size=64, max_steps=20, warmup_steps=2, eval_every=10,
                         eval_size=50, checkpoint_every=1_000)
    trained = run_job(root, "trained", [config], ctx=ctx).run.dir
    runs = root / "runs"
    localize = LocalizeConfig(n_pairs=32, n_eval=32, n_random=1)
    run_job(runs, "tiny", demo_job(str(trained), n_eval=64, localize=(localize,), n_probe=200),
            ctx=ctx)
    run_job(runs, "bare", demo_job(str(trained), n_eval=64, localize=(), n_probe=None), ctx=ctx)
    return runs, trained
