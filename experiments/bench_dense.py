"""Dense scoring speed against transformers on the same tokens, in one run (issue 11 item 6).

  python -m experiments.bench_dense [CONFIG] [key=value ...]
  e.g.  ... data.eval_batch_size=16 mc.limit=50 bench.steps=3

Three comparisons, interleaved (jax, torch, jax, torch, ...), best of bench.steps
timed repeats after one warm-up each, torch with as many threads as XLA has cores:
- full-sequence perplexity: `perplexity.full_sequence_nll` against transformers'
  forward + log-softmax + gather (as `hf_reference.hf_block_nll`) on the same
  data.eval_batch_size blocks of C + T + 1 tokens of data.eval (one batch);
- multiple-choice scoring: dense `multiple_choice.score_requests` (one forward per
  choice, logits only at the continuation) against transformers scoring the same
  rows as lm-eval's `hf` model does (every choice a right-padded row, logits of all
  positions) on the first mc.limit items of mc.task, mc.batch_size items per call;
- XLA's 2048^2 fp32 matmul against torch's: what the hardware allows;
- with eval.policy: greedy generation tokens/s (`evaluation.generate`, one prompt
  of the first data.context_len tokens, 4 windows of T new tokens) dense and with
  the shipped policy in the loop at the first eval.knob / eval.budgets target.
Prints seconds and jax / torch (below 1: jax is faster), and checks both sides
score the same numbers (max |difference|).
"""

from __future__ import annotations

import os
import time

import jax.numpy as jnp
import numpy as np

from experiments import cli
from experiments.bench_utils import matmul_peak_gflops
from sol_jax.data import mc_tasks, text_blocks
from sol_jax.evaluation import generate as gen
from sol_jax.evaluation import multiple_choice as mc
from sol_jax.evaluation.hf_reference import load_hf_model
from sol_jax.evaluation.knob import requested_targets
from sol_jax.evaluation.perplexity import full_sequence_nll
from sol_jax.models import load_model, load_tokenizer
from sol_jax.policy import PolicyAgent
from sol_jax.rl import make_setup, trained_policy

KEYS = (
  "model.source",
  "data.data_dir",
  "data.eval",
  "data.context_len",
  "data.horizon",
  "data.eval_batch_size",
  "mc.task",
  "mc.limit",
  "mc.batch_size",
  "bench.steps",
  "eval.policy",
  "eval.knob",
  "eval.budgets",
)


def _best(fn, repeats: int) -> tuple[float, object]:
  out = fn()  # warm-up (compilation for jax)
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - start)
  return best, out


def torch_block_nll(model, blocks: np.ndarray) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top

  batch = torch.tensor(blocks, dtype=torch.long)
  with torch.no_grad():
    logp = torch.log_softmax(model(batch[:, :-1]).logits.float(), dim=-1)
    return -logp.gather(-1, batch[:, 1:, None])[..., 0].numpy()


def torch_mc_logliks(model, requests, rows_per_call: int) -> list[np.ndarray]:
  """lm-eval `hf` style: each choice a right-padded row (rows sorted by length, as
  lm-eval's collator sorts them), log-softmax of all positions."""
  import torch  # pylint: disable=g-import-not-at-top

  rows = [
    (i, k, np.concatenate([r.context, c]), len(c))
    for i, r in enumerate(requests)
    for k, c in enumerate(r.continuations)
  ]
  rows.sort(key=lambda x: -len(x[2]))
  out = [np.zeros(len(r.continuations)) for r in requests]
  for s in range(0, len(rows), rows_per_call):
    chunk = rows[s : s + rows_per_call]
    width = max(len(x[2]) for x in chunk) - 1
    batch = torch.zeros((len(chunk), width), dtype=torch.long)
    for j, (_, _, seq, _) in enumerate(chunk):
      batch[j, : len(seq) - 1] = torch.tensor(seq[:-1])
    with torch.no_grad():
      logp = torch.log_softmax(model(batch).logits.float(), dim=-1)
    for j, (i, k, seq, n) in enumerate(chunk):
      pos = torch.arange(len(seq) - 1 - n, len(seq) - 1)
      out[i][k] = float(logp[j, pos, torch.tensor(seq[-n:])].double().sum())
  return out


def torch_matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
  import torch  # pylint: disable=g-import-not-at-top

  a = torch.randn(size, size)
  seconds, _ = _best(lambda: a @ a, repeats)
  return 2 * size**3 / seconds / 1e9


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS)
  cfg = cmd.cfg
  import torch  # pylint: disable=g-import-not-at-top

  threads = os.cpu_count() or 1
  torch.set_num_threads(threads)
  c, t, reps = cfg.data.context_len, cfg.data.horizon, cfg.bench.steps
  cli.check_data(cfg, cfg.data.eval)
  model_cfg, params = load_model(cfg.model.source, dtype="float32")
  tokenizer = load_tokenizer(cfg.model.source)
  hf = load_hf_model(cfg.model.source)
  n = cfg.data.eval_batch_size
  blocks = text_blocks(
    cfg.data.eval, tokenizer, c + t + 1, data_dir=cfg.data.data_dir, max_blocks=n
  )
  print(f"{cfg.model.source}, {threads} threads; {len(blocks)} blocks of {c + t + 1} tokens")
  tokens = blocks.shape[0] * (blocks.shape[1] - 1)

  jax_seconds, ours = _best(
    lambda: np.asarray(full_sequence_nll(params, model_cfg, jnp.asarray(blocks))), reps
  )
  torch_seconds, theirs = _best(lambda: torch_block_nll(hf, blocks), reps)
  print(
    f"full-sequence NLL, {tokens} tokens: jax {jax_seconds:.2f} s, transformers "
    f"{torch_seconds:.2f} s, jax/torch {jax_seconds / torch_seconds:.2f} "
    f"(max |NLL diff| {np.max(np.abs(ours - theirs)):.1e})"
  )

  items = mc_tasks.load_task(cfg.mc.task, cfg.data.data_dir, limit=cfg.mc.limit)
  requests = [mc.encode_item(tokenizer, it) for it in items]
  setup = make_setup(cfg, model_cfg)
  most = max(len(r.continuations) for r in requests)
  score = lambda: [
    s.loglik
    for s in mc.score_requests(
      params,
      model_cfg,
      requests,
      space=setup.space,
      settings=setup.settings,
      horizon=t,
      batch_size=cfg.mc.batch_size,
      progress=False,
    )
  ]
  jax_seconds, ours = _best(score, reps)
  torch_seconds, theirs = _best(
    lambda: torch_mc_logliks(hf, requests, cfg.mc.batch_size * most), reps
  )
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs))
  print(
    f"multiple choice, {len(items)} {cfg.mc.task} items: jax {jax_seconds:.2f} s, transformers "
    f"{torch_seconds:.2f} s, jax/torch {jax_seconds / torch_seconds:.2f} "
    f"(max |loglik diff| {diff:.1e})"
  )
  xla, tor = matmul_peak_gflops(), torch_matmul_gflops()
  print(
    f"2048^2 fp32 matmul: XLA {xla:.0f} GFLOP/s, torch {tor:.0f} GFLOP/s, XLA/torch {xla / tor:.2f}"
  )
  if cfg.eval.policy is not None:
    generation_speed(cfg, model_cfg, params, tokenizer, setup, blocks[0, :c], reps)


def generation_speed(cfg, model_cfg, params, tokenizer, setup, prompt, reps) -> None:
  """Greedy tokens/s of `generate`, dense and with the shipped policy in the loop."""
  t = cfg.data.horizon
  policy, step, _ = trained_policy(cfg, model_cfg)
  target = requested_targets(cfg.eval, setup.space)[0]
  agent = PolicyAgent(setup.policy, setup.space, t, greedy=True)
  run = lambda provider, inputs: gen.generate(
    params,
    model_cfg,
    tokenizer,
    [prompt],
    space=setup.space,
    settings=setup.settings,
    horizon=t,
    max_new_tokens=4 * t,
    provider=provider,
    inputs=inputs,
    stop_at_eos=False,
  )
  dense_s, _ = _best(lambda: run(None, None), reps)
  policy_s, _ = _best(lambda: run(agent, gen.policy_inputs(policy, target)), reps)
  n = 4 * t
  print(
    f"generation, {len(prompt)}-token prompt, {n} new tokens: dense {n / dense_s:.1f} tok/s, "
    f"policy (step {step}) in the loop {n / policy_s:.1f} tok/s ({policy_s / dense_s:.2f}x the time)"
  )


if __name__ == "__main__":
  main()
