"""Expected per-device memory of one GRPO train step, computed from shapes alone.

  python -m experiments.memory_plan [CONFIG] [key=value ...]
  e.g.  ... All_VariantsvMax mesh.data=8 mesh.model=1 model.dtype=bfloat16

Reads no weights (the model's shapes come from a table of the registry models,
a .gguf's metadata or a checkpoint's config.json) and compiles nothing: the
frozen LM's params split over mesh.model as the training loop splits them, the
policy's params and optimizer state (replicated), the prefix KV cache
[L, B, Hkv, C, dh] and the K schedules' suffix KV [K, L, B, Hkv, T, dh], and
the dominant activations of the prefill, of one decode step and of the update,
batch-sized ones divided over mesh.data. Temps are summed per part of the step
(prefill, decode, update) and the largest part counts, as XLA reuses buffers.

mesh.data=-1 plans for every device of this host. bench.memory_check=true also
compiles the real step for this host's backend (abstract inputs, no weights)
and prints XLA's memory_analysis() beside the estimate with their ratio; on a
CPU host the mesh's data x model devices are emulated (XLA CPU devices).
"""

from __future__ import annotations

import sys

import jax

from experiments import cli
from sol_jax.models.known_configs import model_config
from sol_jax.rl import memory_plan

KEYS = (
  "mesh",
  "model.source",
  "model.dtype",
  "rl.batch_size",
  "rl.num_rollouts",
  "data.context_len",
  "data.horizon",
  "actions.sparsity_criteria",
  "actions.page_size",
  "bench.memory_check",
)


@cli.main_entry
def main(argv=None):
  cfg = cli.parse(argv, __doc__, KEYS).cfg
  check = cfg.bench.memory_check
  if check and cfg.mesh.data != -1 and cfg.mesh.data * cfg.mesh.model > 1:
    # Before any device is touched: emulated CPU devices for the mesh (a no-op
    # for accelerator backends, and once the CPU backend has started).
    jax.config.update("jax_num_cpu_devices", cfg.mesh.data * cfg.mesh.model)
  local = jax.device_count() if cfg.mesh.data == -1 else None
  data, model = memory_plan.mesh_sizes(cfg, local)
  model_cfg = model_config(cfg.model.source)
  plan = memory_plan.estimate(cfg, model_cfg, data, model)
  compiled = memory_plan.compiled_memory(cfg, model_cfg) if check else None
  print(
    f"{cfg.name}: {cfg.model.source} ({cfg.model.dtype}), B={cfg.rl.batch_size} "
    f"K={cfg.rl.num_rollouts} C={cfg.data.context_len} T={cfg.data.horizon}"
    + (f"; mesh.data=-1 planned as this host's {local} devices" if local else "")
  )
  print(memory_plan.format_table(plan, compiled))
  if compiled is not None:
    platform = jax.devices()[0].platform
    print(f"compiled for {len(jax.devices())} {platform} device(s)")
    if platform == "cpu" and cfg.model.dtype == "bfloat16":
      print(
        "note: XLA:CPU computes bfloat16 in float32 (it converts whole weight stacks and "
        "KV caches), so a CPU compile overstates the temps of a bf16 step on TPU/GPU"
      )


if __name__ == "__main__":
  main(sys.argv[1:])
