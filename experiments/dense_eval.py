"""Dense WikiText-2 perplexity of the frozen LM, with a transformers cross-check.

  python -m experiments.dense_eval [CONFIG] [key=value ...] [--out PATH]
  e.g.  ... smollm2_3L_cpu data.eval_batches=0 eval.hf_check=false

CONFIG defaults to smollm2_3L_cpu; it sets the model, data, C, T and the number
of blocks (data.eval_batches x data.eval_batch_size; data.eval_batches=0 means all).
eval.hf_check=false skips the transformers cross-check. --out defaults to
runs/dense_eval/<config name>-<time>.json.
"""

from __future__ import annotations

import json
import pathlib
import time

from experiments import cli
from sol_jax import evaluation
from sol_jax.data import text_blocks
from sol_jax.models import load_model, load_tokenizer

KEYS = (
  "model.source",
  "data.data_dir",
  "data.eval",
  "data.context_len",
  "data.horizon",
  "data.eval_batches",
  "data.eval_batch_size",
  "eval.dtype",
  "eval.hf_check",
  "eval.progress",
)


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, has_out=True, moved={"no-hf-check": "eval.hf_check=false"})
  cfg = cmd.cfg
  c, t = cfg.data.context_len, cfg.data.horizon
  cli.check_data(cfg, cfg.data.eval)

  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  blocks = text_blocks(
    cfg.data.eval, tokenizer, c + t + 1, data_dir=cfg.data.data_dir, max_blocks=cfg.data.eval_blocks
  )
  print(
    f"{cfg.model.source}: {len(blocks)} blocks of C={c} + T={t} + 1 tokens from {cfg.data.eval}"
  )

  start = time.perf_counter()
  ours = evaluation.evaluate_dense(
    params, model_cfg, blocks, c, t, cfg.data.eval_batch_size, progress=cfg.eval.progress
  )
  ours["seconds"] = time.perf_counter() - start
  result = {
    "model": cfg.model.source,
    "data": cfg.data.eval,
    "dtype": cfg.eval.dtype,
    "blocks": len(blocks),
    "context_len": c,
    "horizon": t,
    "sol_jax": ours,
  }
  print(
    f"sol_jax      : SOL-protocol PPL {ours['sol_ppl']:.4f} ({ours['sol_tokens']} tokens), "
    f"full-sequence PPL {ours['full_ppl']:.4f} ({ours['full_tokens']} tokens)"
  )
  if cfg.eval.hf_check:
    start = time.perf_counter()
    model = evaluation.load_hf_model(cfg.model.source)
    sol, full = evaluation.hf_block_nll(
      model, blocks, c, cfg.data.eval_batch_size, progress=cfg.eval.progress
    )
    ref = evaluation.perplexity_summary(sol, full)
    ref["seconds"] = time.perf_counter() - start
    rel = {k: abs(ours[k] / ref[k] - 1) for k in ("sol_ppl", "full_ppl")}
    result.update(
      transformers=ref,
      relative_difference=rel,
      agree_within_0_1_percent=all(v < 1e-3 for v in rel.values()),
    )
    print(
      f"transformers : SOL-protocol PPL {ref['sol_ppl']:.4f}, full-sequence PPL {ref['full_ppl']:.4f}"
    )
    print(
      f"relative difference: SOL {rel['sol_ppl']:.2e}, full {rel['full_ppl']:.2e} "
      f"({'OK' if result['agree_within_0_1_percent'] else 'MISMATCH'}: tolerance 1e-3)"
    )
  out = pathlib.Path(cmd.out or f"runs/dense_eval/{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}.json")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2))
  print(f"wrote {out}")
  return result


if __name__ == "__main__":
  main()
