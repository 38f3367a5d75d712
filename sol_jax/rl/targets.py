"""Per-input budget targets (κ*, ρ*, η*) for one training batch (method §9.1).

For each axis: a list in the config wins (uniform choice from it), else a
[min, max] range (uniform draw), else the config default. One draw per input is
shared by that input's K rollouts. η is bits/16, so `budget_eta_*` are already
ratios (the reference's C_target_quant_bits = 7 is η = 0.4375).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sol_jax.config import RLCfg

AXES = ("kappa", "rho", "eta")  # column order of the returned targets


def _sample_axis(key: jax.Array, cfg: RLCfg, axis: str, batch: int) -> jax.Array:
  levels = getattr(cfg, f"budget_{axis}_list")
  lo, hi = getattr(cfg, f"budget_{axis}_min"), getattr(cfg, f"budget_{axis}_max")
  if levels is not None:
    return jax.random.choice(key, jnp.asarray(levels, jnp.float32), (batch,))
  if lo is not None and hi is not None:
    return jax.random.uniform(key, (batch,), jnp.float32, minval=lo, maxval=hi)
  return jnp.full((batch,), getattr(cfg, f"budget_{axis}_default"), jnp.float32)


def sample_targets(rng: jax.Array, cfg: RLCfg, batch: int) -> jax.Array:
  """[batch, 3] float32 targets (κ*, ρ*, η*), deterministic given `rng`.

  Each axis draws from its own sub-key of `rng`, so changing how one axis is
  configured does not change the other axes' draws. `cfg` and `batch` are
  static (pass them via `functools.partial` or `static_argnums` under jit).
  """
  if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
    raise ValueError(f"batch={batch!r} must be a positive int (the number of input blocks B).")
  if not isinstance(cfg, RLCfg):
    raise ValueError(f"cfg must be the rl config section (RLCfg), got {type(cfg).__name__}.")
  keys = jax.random.split(rng, len(AXES))
  return jnp.stack([_sample_axis(k, cfg, a, batch) for k, a in zip(keys, AXES)], axis=-1)
