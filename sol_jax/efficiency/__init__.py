"""The compute knobs a policy turns, and how their cost is counted (method §4-§5, §7, §11).

- `actions`: the joint (κ, ρ, b) grid `ActionSpace` and the named variants
  (`load_action_variant("3L")`); effective-step forcing.
- `attention_sparsity` (Quest / recency / relevancy token keep),
  `mlp_compression` (MLP-input channel pruning, MLP-output fake-quantization).
- `controls`: the per-row `Controls` every controlled LM call receives, built
  from `ControlSettings`; `decode`: dense prefill and controlled decode steps.
- `budget`: realized averages and net keep; `flops`: analytic decode FLOPs.
"""

from sol_jax.efficiency import budget, decode, flops
from sol_jax.efficiency.actions import (
  MAX_BITS,
  MIN_BITS,
  SPARSITY_CRITERIA,
  ActionSpace,
  ActionVariant,
  available_variants,
  force_dense,
  is_effective,
  load_action_variant,
)
from sol_jax.efficiency.attention_sparsity import quest_keep, recency_keep, relevancy_keep
from sol_jax.efficiency.budget import net_keep
from sol_jax.efficiency.controls import Controls, ControlSettings, make_controls
from sol_jax.efficiency.decode import dense_prefill, new_suffix, schedule_step
from sol_jax.efficiency.flops import relative_flops, schedule_relative_flops
from sol_jax.efficiency.mlp_compression import fake_quantize, prune_mlp_input

__all__ = [
  # the action grid
  "MAX_BITS",
  "MIN_BITS",
  "SPARSITY_CRITERIA",
  "ActionSpace",
  "ActionVariant",
  "available_variants",
  "force_dense",
  "is_effective",
  "load_action_variant",
  # the three mechanisms
  "fake_quantize",
  "prune_mlp_input",
  "quest_keep",
  "recency_keep",
  "relevancy_keep",
  # controlled decoding
  "ControlSettings",
  "Controls",
  "dense_prefill",
  "make_controls",
  "new_suffix",
  "schedule_step",
  # cost accounting (and the modules, for the rest of it)
  "budget",
  "decode",
  "flops",
  "net_keep",
  "relative_flops",
  "schedule_relative_flops",
]
