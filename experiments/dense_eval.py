"""Dense WikiText-2 perplexity of the frozen LM, with a transformers cross-check.

  python -m experiments.dense_eval [CONFIG] [key=value ...] [--no-hf-check] [--out PATH]

CONFIG defaults to smollm2_3L_cpu; it sets the model, data, C, T and the number
of blocks (data.eval_batches x data.eval_batch_size; data.eval_batches=0 means all).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time


from experiments import DEFAULT_CONFIG
from sol_jax import config as config_lib
from sol_jax.data import text_blocks
from sol_jax.evaluation import hf_reference, perplexity
from sol_jax.models.registry import load_model
from sol_jax.models.tokenizer import load_tokenizer


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--no-hf-check", action="store_true", help="skip the transformers cross-check")
  parser.add_argument("--out", default=None, help="JSON result path (default runs/dense_eval/...)")
  parser.add_argument("rest", nargs="*", help="[CONFIG] key=value ...")
  args = parser.parse_args(argv)
  cfg = config_lib.config_from_argv(args.rest, default=DEFAULT_CONFIG)
  c, t = cfg.data.context_len, cfg.data.horizon

  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  n_blocks = cfg.data.eval_batches * cfg.data.eval_batch_size or None
  blocks = text_blocks(cfg.data.eval, tokenizer, c + t + 1, data_dir=cfg.data.data_dir,
                       max_blocks=n_blocks)
  print(f"{cfg.model.source}: {len(blocks)} blocks of C={c} + T={t} + 1 tokens from {cfg.data.eval}")

  start = time.perf_counter()
  ours = perplexity.evaluate_dense(params, model_cfg, blocks, c, t, cfg.data.eval_batch_size)
  ours["seconds"] = time.perf_counter() - start
  result = {"model": cfg.model.source, "data": cfg.data.eval, "dtype": cfg.eval.dtype,
            "blocks": len(blocks), "context_len": c, "horizon": t, "sol_jax": ours}
  print(f"sol_jax      : SOL-protocol PPL {ours['sol_ppl']:.4f} ({ours['sol_tokens']} tokens), "
        f"full-sequence PPL {ours['full_ppl']:.4f} ({ours['full_tokens']} tokens)")
  if not args.no_hf_check:
    start = time.perf_counter()
    model = hf_reference.load_hf_model(cfg.model.source)
    sol, full = hf_reference.hf_block_nll(model, blocks, c, cfg.data.eval_batch_size)
    ref = perplexity.summarize(sol, full)
    ref["seconds"] = time.perf_counter() - start
    rel = {k: abs(ours[k] / ref[k] - 1) for k in ("sol_ppl", "full_ppl")}
    result.update(transformers=ref, relative_difference=rel, agree_within_0_1_percent=
                  all(v < 1e-3 for v in rel.values()))
    print(f"transformers : SOL-protocol PPL {ref['sol_ppl']:.4f}, full-sequence PPL {ref['full_ppl']:.4f}")
    print(f"relative difference: SOL {rel['sol_ppl']:.2e}, full {rel['full_ppl']:.2e} "
          f"({'OK' if result['agree_within_0_1_percent'] else 'MISMATCH'}: tolerance 1e-3)")
  out = pathlib.Path(args.out or f"runs/dense_eval/{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}.json")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2))
  print(f"wrote {out}")
  return result


if __name__ == "__main__":
  main()
