"""Training throughput of the TransformerLens bridge vs a plain PyTorch transformer.

Trains this project's model (``build_model``: a ``TransformerBridge`` booted natively) and a
minimal GPT-style decoder written here with the same shapes, parameter count and weights on
the same batch of real task tokens (same loss, AdamW, lr schedule and grad clipping as
``arithinterp.training``), interleaving the two in alternating rounds so background load hits
both alike. Prints the median step time and tokens/s of each and the ratio
tokens/s(TL) / tokens/s(plain); the goal is >= 0.9 (the bridge costs at most ~10%).

Run: ``.venv/bin/python benchmarks/train_throughput.py [--steps 30] [--device auto]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arithinterp.models import ModelSpec, build_model, context_length, resolve_device
from arithinterp.tasks import make_splits
from arithinterp.tasks.vocab import CHAR_VOCAB
from arithinterp.training.config import TrainConfig
from arithinterp.training.loop import answer_loss, batch_indices, lr_at
from arithinterp.training.recipes import zoo_recipe


class Block(nn.Module):
    """Pre-LN block: causal multi-head self-attention, then a GELU MLP, both residual."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, d_mlp: int, n_ctx: int,
                 attention: str) -> None:
        super().__init__()
        self.n_heads, self.d_head, self.attention = n_heads, d_head, attention
        self.ln1 = nn.LayerNorm(d_model)
        self.q = nn.Linear(d_model, n_heads * d_head)
        self.k = nn.Linear(d_model, n_heads * d_head)
        self.v = nn.Linear(d_model, n_heads * d_head)
        self.o = nn.Linear(n_heads * d_head, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc_in = nn.Linear(d_model, d_mlp)
        self.fc_out = nn.Linear(d_mlp, d_model)
        mask = torch.triu(torch.ones(n_ctx, n_ctx, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, seq, _ = x.shape
        h = self.ln1(x)
        q, k, v = (lin(h).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
                   for lin in (self.q, self.k, self.v))
        if self.attention == "sdpa":
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # The default: TL's native attention is this same eager matmul + softmax (no
            # fused kernel), so "manual" isolates what the bridge costs, not a kernel choice.
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
            scores = scores.masked_fill(self.causal_mask[:seq, :seq], float("-inf"))
            z = scores.softmax(dim=-1) @ v
        x = x + self.o(z.transpose(1, 2).reshape(batch, seq, -1))
        return x + self.fc_out(F.gelu(self.fc_in(self.ln2(x))))


class PlainTransformer(nn.Module):
    """Minimal GPT-style decoder (token + learned positional embeddings, pre-LN blocks)."""

    def __init__(self, spec: ModelSpec, n_ctx: int, d_vocab: int, attention: str,
                 seed: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(d_vocab, spec.d_model)
        self.pos_embed = nn.Embedding(n_ctx, spec.d_model)
        self.blocks = nn.ModuleList(
            Block(spec.d_model, spec.n_heads, spec.head_dim, spec.mlp_dim, n_ctx, attention)
            for _ in range(spec.n_layers))
        self.ln_final = nn.LayerNorm(spec.d_model)
        # No bias: TL's native head has none (its state_dict shows an all-zero
        # unembed.bias that is not a parameter), and the parameter counts must match.
        self.unembed = nn.Linear(spec.d_model, d_vocab, bias=False)
        self._init_gpt2(spec.n_layers, torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def _init_gpt2(self, n_layers: int, gen: torch.Generator) -> None:
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1:  # LayerNorm scale
                p.fill_(1.0)
            else:  # output projections scaled down by depth, as in GPT-2
                out_proj = name.endswith(("o.weight", "fc_out.weight"))
                p.normal_(0.0, 0.02 / math.sqrt(2 * n_layers) if out_proj else 0.02,
                          generator=gen)

    def forward(self, tokens: Tensor) -> Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.pos_embed(pos)
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x))


def load_tl_weights(plain: PlainTransformer, tl_model: nn.Module) -> None:
    """Copy the TL model's weights (familiar state_dict names) into the plain model."""
    state = dict(tl_model.state_dict())
    bias = state.pop("unembed.bias", None)
    if bias is not None and bias.abs().max() > 0:
        sys.exit("inconsistent: the TL model has a nonzero unembed.bias the plain model lacks")
    renamed = {k.replace(".attn.", ".").replace(".mlp.in.", ".fc_in.")
               .replace(".mlp.out.", ".fc_out."): v for k, v in state.items()}
    plain.load_state_dict(renamed, strict=True)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Trainer:
    """One model's training step, as in arithinterp.training (loss, clip, lr schedule, AdamW)."""

    def __init__(self, model: nn.Module, config: TrainConfig, tokens: Tensor,
                 loss_mask: Tensor) -> None:
        self.model, self.config = model.train(), config
        self.tokens, self.loss_mask = tokens, loss_mask
        self.params = list(model.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=config.lr,
                                     weight_decay=config.weight_decay)
        self.step_count = 0

    def step(self) -> float:
        loss = answer_loss(self.model(self.tokens), self.tokens, self.loss_mask)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step_count, self.config)
        self.opt.step()
        self.step_count += 1
        return float(loss.detach())  # the training loop reads the loss every step too


def time_steps(trainer: Trainer, n: int, device: torch.device) -> list[float]:
    """Wall-clock seconds of each of n training steps."""
    times = []
    for _ in range(n):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        trainer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="add3-reversed", help="zoo recipe for the shapes")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per model")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--attention", choices=("manual", "sdpa"), default="manual",
                        help="plain model's attention: eager softmax (like TL) or fused SDPA")
    parser.add_argument("--seed", type=int, default=0, help="model init and batch choice")
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--steps, --rounds and --threads must be >= 1, --warmup >= 0")

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    recipe = zoo_recipe(args.recipe)
    config = replace(recipe, model=replace(recipe.model, seed=args.seed), seed=args.seed)
    print(f"torch {torch.__version__}  device {device}  threads {torch.get_num_threads()}  "
          f"seed {args.seed}  attention {args.attention}")

    train_set, _ = make_splits(config.task, config.batch_size, 1, config.seed,
                               sampling=config.sampling)
    batch = train_set[batch_indices(0, len(train_set), config.batch_size, config.seed)]
    tokens, loss_mask = batch.tokens.to(device), batch.loss_mask.to(device)
    tokens_per_step = tokens.numel()
    print(f"recipe {args.recipe}: batch {tokens.shape[0]} x {tokens.shape[1]} tokens, "
          f"vocab {CHAR_VOCAB.size}, {config.model.n_layers} layers, "
          f"d_model {config.model.d_model}, "
          f"{config.model.n_heads} heads, d_mlp {config.model.mlp_dim}")

    tl_model = build_model(config.model, config.task, device)
    plain = PlainTransformer(config.model, context_length(config.task), CHAR_VOCAB.size,
                             args.attention, args.seed).to(device)
    n_tl, n_plain = n_params(tl_model), n_params(plain)
    print(f"parameters: TL {n_tl:,}  plain {n_plain:,}")
    if n_tl != n_plain:
        sys.exit(f"inconsistent: parameter counts differ (TL {n_tl} vs plain {n_plain})")

    with torch.no_grad():
        init_loss = answer_loss(plain(tokens), tokens, loss_mask).item()
        print(f"plain model, own init: loss {init_loss:.3f}  (ln vocab = "
              f"{math.log(CHAR_VOCAB.size):.3f})")
        if abs(init_loss - math.log(CHAR_VOCAB.size)) > 0.5:
            sys.exit("inconsistent: the plain model's initial loss is far from ln(vocab)")
        # Train both from the same weights, and check the two compute the same function.
        load_tl_weights(plain, tl_model)
        tl_logits, plain_logits = tl_model(tokens), plain(tokens)
        diff = (tl_logits - plain_logits).abs().max().item()
        print(f"with TL's weights: max |logit diff| {diff:.2e}  loss TL "
              f"{answer_loss(tl_logits, tokens, loss_mask).item():.3f}  plain "
              f"{answer_loss(plain_logits, tokens, loss_mask).item():.3f}")
        if diff > 1e-3:
            sys.exit("inconsistent: the plain model does not compute what the TL model does")

    trainers = {"TL": Trainer(tl_model, config, tokens, loss_mask),
                "plain": Trainer(plain, config, tokens, loss_mask)}
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.step()
    times: dict[str, list[float]] = {name: [] for name in trainers}
    per_round = math.ceil(args.steps / args.rounds)
    for r in range(args.rounds):
        order = list(trainers) if r % 2 == 0 else list(reversed(trainers))
        for name in order:
            n = min(per_round, args.steps - len(times[name]))
            times[name] += time_steps(trainers[name], n, device)

    tps = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        tps[name] = tokens_per_step / med
        print(f"{name:>5}: {len(ts)} steps, median {med * 1e3:8.2f} ms/step, "
              f"{tps[name]:10,.0f} tokens/s")
    print(f"ratio (TL / plain PyTorch tokens/s): {tps['TL'] / tps['plain']:.2f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
