"""Shared fixtures: one thread (tiny tensors run far slower on two), tiny models, quiet bars."""

import os
from pathlib import Path

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


def with_random_biases(model, scale: float = 0.1):
    """The model (eval mode) with every bias drawn from N(0, scale), seeded per parameter
    name: random models whose biases matter as much as their weights."""
    model = model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name:
                p.normal_(0, scale, generator=torch.Generator().manual_seed(len(name)))
    return model


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
    from arithinterp.stages.job import run_job
    from arithinterp.studies.demo import demo_job
    from arithinterp.training.config import TrainConfig

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


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """A serial sweep of 4 tiny trials (2 seeds x 2 training-set sizes, training only, ~5 s):
    (runs_dir, the results table)."""
    from arithinterp.models import ModelSpec
    from arithinterp.sweeps.run import run_sweep
    from arithinterp.sweeps.spec import Sweep
    from arithinterp.tasks import TaskSpec
    from arithinterp.training.config import TrainConfig

    base = TrainConfig(task=TaskSpec(digits_a=1, digits_b=1),
                       model=ModelSpec(n_layers=1, d_model=16, n_heads=2, d_mlp=32),
                       n_test=20, batch_size=16, max_steps=20, eval_every=10, eval_size=20,
                       warmup_steps=2, checkpoint_every=20, target_accuracy=None)
    sweep = Sweep(name="sw", base=base, grid={"n_train": [40, 80], "seed": [0, 1]}, stages=())
    runs = tmp_path_factory.mktemp("sweep") / "runs"
    return runs, run_sweep(sweep, runs, backend="serial", progress=False)


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory, ctx):
    """The multiplication study at quick scale, one seed (~10 s): (runs_dir, report run)."""
    from arithinterp.studies.multiplication import MultiplicationStudy, run_study

    runs = tmp_path_factory.mktemp("study")
    study = MultiplicationStudy(name="q", scale="quick", seeds=(0,), n_analysis=300)
    return runs, run_study(study, runs, ctx)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A tiny Llama (rotary, RMSNorm, gated MLP, grouped-query attention: 4 query heads
    sharing 2 key/value heads) built from a config and saved locally, with a per-character
    tokenizer: stands in for a pretrained LLM."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = list("0123456789+-*= \n:?abcdefghijklmnopqrstuvwxyzQA.,")
    vocab = {ch: i for i, ch in enumerate(chars + ["<unk>", "<s>", "</s>"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()  # characters join without spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=vocab["<s>"],
                      eos_token_id=vocab["</s>"], tie_word_embeddings=False,
                      initializer_range=0.4)  # logits that differ between prompts
    torch.manual_seed(0)  # the HF initialiser reads the global generator
    path = tmp_path_factory.mktemp("llama") / "llama"
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llm_run(tmp_path_factory, tiny_llama_dir, ctx):
    """The llm stage on the tiny Llama (pairs from every evaluated problem: a random model
    answers none): (runs_dir, run)."""
    from arithinterp.llm import LLMLocalizeConfig
    from arithinterp.stages.job import run_job
    from arithinterp.stages.llm import LLMConfig
    from arithinterp.studies.demo import llm_job
    from arithinterp.tasks import PromptSuite

    config = LLMConfig(suite=PromptSuite(digits=2, n_shots=2), n_eval=10, change="a", digit=1,
                       n_pairs=6, keep="all",
                       localize=LLMLocalizeConfig(n_exact=4, top_k=2, n_random=2))
    runs = tmp_path_factory.mktemp("llm-runs")
    return runs, run_job(runs, "llm", llm_job(f"hf:{tiny_llama_dir}", config), ctx=ctx).run


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory):
    """Where the embedded SmolLM2's dequantized copy goes: $ARITHINTERP_LLM_CACHE when set
    (a machine that has one reuses it), else a temporary folder."""
    from arithinterp.pretrained import CACHE_ENV

    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else tmp_path_factory.mktemp("llm-cache")


@pytest.fixture(scope="session")
def smollm2(smollm2_cache):
    """The embedded SmolLM2-135M-Instruct, loaded once per session (slow tests only)."""
    from arithinterp.pretrained import load_llm

    return load_llm("llm:smollm2", cache=smollm2_cache)


@pytest.fixture(scope="session")
def quick_scenario(tmp_path_factory, ctx):
    """The selective fine-tuning scenario at quick scale (~13 s): the run."""
    from arithinterp.studies.selective_finetuning import FinetuneScenario, run_scenario

    scenario = FinetuneScenario.smoke("q")
    return run_scenario(scenario, tmp_path_factory.mktemp("scenario"), ctx)


@pytest.fixture(scope="session")
def modular_run(tmp_path_factory, ctx):
    """A p = 23 modular-addition model trained 200 full-batch steps with the grokking recipe
    (snapshots every 50), with its modular stage: the run."""
    from dataclasses import replace

    from arithinterp.stages.job import run_job
    from arithinterp.stages.modular import ModularConfig
    from arithinterp.tasks import ModularTask
    from arithinterp.training.recipes import grokking_config

    config = replace(grokking_config(ModularTask(p=23), max_steps=200, snapshot_every=50),
                     eval_every=50)
    runs = tmp_path_factory.mktemp("modular")
    return run_job(runs, "mod23", [config, ModularConfig()], ctx=ctx).run


LLM_FT_SELECTION = ("L0H3", "L1.mlp")  # a head whose key/value head is shared, and an MLP


@pytest.fixture(scope="session")
def tiny_llm_finetune(tmp_path_factory, tiny_llm_run, ctx):
    """The llm_finetune stage on a copy of `tiny_llm_run`: every arm, two seeds, another
    suite, named components, a few steps at a high learning rate: (runs_dir, run, config)."""
    import shutil

    from arithinterp.finetune import Schedule
    from arithinterp.stages.finetune import Selection
    from arithinterp.stages.job import run_on
    from arithinterp.stages.llm_finetune import LLMFinetuneConfig
    from arithinterp.tasks import PromptSuite

    runs = tmp_path_factory.mktemp("llm-ft")
    shutil.copytree(tiny_llm_run[1].dir, runs / "llm")
    config = LLMFinetuneConfig(
        select=Selection(components=LLM_FT_SELECTION), suite=PromptSuite(digits=2, n_shots=2),
        other_suites=(PromptSuite(op="*", n_shots=2),), window=32, n_windows=4, n_random=2,
        seeds=(0, 1), schedule=Schedule(max_steps=6, lr=1e-2, warmup_steps=0, batch_size=8),
        n_train=40, n_eval=12, eval_every=3, n_probe=6)
    run = run_on(runs / "llm", [config], runs_dir=runs, ctx=ctx).run
    return runs, run, config
