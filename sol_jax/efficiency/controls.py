"""Per-row efficiency controls passed explicitly into every controlled LM call.

A `Controls` value is a pytree of three [rows] arrays (κ, ρ, bits) plus static
settings. It is built fresh for each controlled step and never stored on a
module, so a previous call's controls cannot leak into a later prefill (the
reference's bug Q1). The prefill and dense replays simply pass `controls=None`.
With κ=1, ρ=1, b=16 every mechanism is the exact identity.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from sol_jax.efficiency import attention_sparsity as sparsity
from sol_jax.efficiency import mlp_compression as mlp
from sol_jax.efficiency.actions import SPARSITY_CRITERIA


@flax.struct.dataclass
class Controls:
  kappa: jax.Array  # [rows] token keep fraction
  rho: jax.Array  # [rows] MLP-input channel keep fraction
  bits: jax.Array  # [rows] MLP-output bit-width (16 = dense)
  criteria: str = flax.struct.field(pytree_node=False, default="quest")
  page_size: int = flax.struct.field(pytree_node=False, default=8)
  sink_tokens: int = flax.struct.field(pytree_node=False, default=4)
  window_tokens: int = flax.struct.field(pytree_node=False, default=2)
  protect_sink_window: bool = flax.struct.field(pytree_node=False, default=False)

  # -- hooks called by sol_jax.models.llama in every layer -------------------
  def attention_keep(self, aux, q, scores_p, scores_s, suffix_k, t):
    if self.criteria == "quest":
      keep = sparsity.quest_keep(q, aux, suffix_k, t, self.kappa, self.page_size)
      if self.protect_sink_window:
        keep = sparsity.protect_sink_window(*keep, t, self.sink_tokens, self.window_tokens)
      return keep
    if self.criteria == "recency":
      return sparsity.recency_keep(
        scores_p.shape[-1], scores_s.shape[-1], t, self.kappa, self.sink_tokens, self.window_tokens
      )
    return sparsity.relevancy_keep(
      scores_p, scores_s, t, self.kappa, self.sink_tokens, self.window_tokens
    )

  def mlp_input(self, u):
    return mlp.prune_mlp_input(u, self.rho)

  def mlp_output(self, y):
    return mlp.fake_quantize(y, self.bits)

  def schedule_axes(self, axis: int = 1) -> "Controls":
    """`vmap` in_axes selecting the schedule axis of every per-row array."""
    return self.replace(kappa=axis, rho=axis, bits=axis)


def make_controls(
  kappa,
  rho,
  bits,
  *,
  criteria: str = "quest",
  page_size: int = 8,
  sink_tokens: int = 4,
  window_tokens: int = 2,
  protect_sink_window: bool = False,
) -> Controls:
  if criteria not in SPARSITY_CRITERIA:
    raise ValueError(f"unknown sparsity_criteria {criteria!r}; choose one of {SPARSITY_CRITERIA}.")
  if page_size < 1:
    raise ValueError(f"page_size must be >= 1, got {page_size}.")
  mlp.check_bits(bits)
  return Controls(
    kappa=jnp.asarray(kappa, jnp.float32),
    rho=jnp.asarray(rho, jnp.float32),
    bits=jnp.asarray(bits, jnp.int32),
    criteria=criteria,
    page_size=page_size,
    sink_tokens=sink_tokens,
    window_tokens=window_tokens,
    protect_sink_window=protect_sink_window,
  )


@dataclasses.dataclass(frozen=True)
class ControlSettings:
  """The static part of the controls, from the `actions` config section."""

  criteria: str = "quest"
  page_size: int = 8
  sink_tokens: int = 4
  window_tokens: int = 2
  protect_sink_window: bool = False

  @classmethod
  def from_config(cls, actions_cfg) -> "ControlSettings":
    return cls(
      actions_cfg.sparsity_criteria,
      actions_cfg.page_size,
      actions_cfg.sink_tokens,
      actions_cfg.window_tokens,
      actions_cfg.quest_protect_sink_window,
    )

  def make(self, kappa, rho, bits) -> Controls:
    return make_controls(
      kappa,
      rho,
      bits,
      criteria=self.criteria,
      page_size=self.page_size,
      sink_tokens=self.sink_tokens,
      window_tokens=self.window_tokens,
      protect_sink_window=self.protect_sink_window,
    )

  def for_actions(self, space, actions) -> Controls:
    """Controls of flat action indices (any shape) of an ActionSpace."""
    return self.make(
      jnp.asarray(space.kappa)[actions],
      jnp.asarray(space.rho)[actions],
      jnp.asarray(space.bits)[actions],
    )


def prefix_aux(prefix, criteria: str, page_size: int):
  """What the sparsity criterion precomputes once per input from the prefix."""
  return sparsity.prefix_page_bounds(prefix, page_size) if criteria == "quest" else None
