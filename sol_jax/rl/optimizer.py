"""AdamW with PyTorch semantics, global-norm clipping and minibatch accumulation (method §9.7).

The reference backpropagates L / grad_accum per minibatch, then every grad_accum
minibatches clips the summed gradient to global norm 2.0 and takes one AdamW
step. The summed gradient is the mean of the minibatch gradients, which is what
`optax.MultiSteps` (use_grad_mean=True) hands its inner optimizer; the clip sits
inside MultiSteps, so it sees the accumulated gradient, not each minibatch's.

AdamW here equals torch.optim.AdamW: decoupled decay p ← p − lr·wd·p on every
parameter (no mask: LayerNorm, embeddings and biases too), constant lr, eps
outside the square root, bias-corrected moments.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from sol_jax.config import OptimCfg

Params = Any


def _check_accum(grad_accum: int) -> None:
  if isinstance(grad_accum, bool) or not isinstance(grad_accum, int) or grad_accum < 1:
    raise ValueError(
      f"grad_accum={grad_accum!r} must be a positive int "
      "(minibatches per optimizer step, config rl.grad_accum)."
    )


def make_step_optimizer(optim_cfg: OptimCfg) -> optax.GradientTransformation:
  """One optimizer step on an already-accumulated gradient: clip, then AdamW."""
  if not isinstance(optim_cfg, OptimCfg):
    raise ValueError(
      f"optim_cfg must be the optim config section (OptimCfg), got {type(optim_cfg).__name__}."
    )
  return optax.chain(
    optax.clip_by_global_norm(optim_cfg.max_grad_norm),
    # weight_decay explicitly: optax's default is 1e-4, PyTorch's 1e-2.
    optax.adamw(
      learning_rate=optim_cfg.lr,
      b1=optim_cfg.b1,
      b2=optim_cfg.b2,
      eps=optim_cfg.eps,
      weight_decay=optim_cfg.weight_decay,
      mask=None,
    ),
  )


def make_optimizer(optim_cfg: OptimCfg, grad_accum: int) -> optax.GradientTransformation:
  """Per-minibatch transformation: zero updates until the grad_accum-th call.

  Feed it the gradient of the plain (undivided) minibatch loss; on every
  grad_accum-th call it clips the mean of the accumulated gradients and returns
  the AdamW update. The state is an `optax.MultiStepsState`; its accumulator
  persists across buffers, as the reference's counter does.
  """
  _check_accum(grad_accum)
  return optax.MultiSteps(
    make_step_optimizer(optim_cfg), every_k_schedule=grad_accum, use_grad_mean=True
  ).gradient_transformation()


def stepped(state: optax.MultiStepsState) -> jax.Array:
  """True right after a call that applied an optimizer step (not an accumulation)."""
  return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)


def window_grad_norm(state: optax.MultiStepsState, grads: Params) -> jax.Array:
  """Global norm of this accumulation window's mean gradient, `grads` included.

  Computed on the state *before* the call that adds `grads`: on a call that
  steps (`stepped` of the new state) it is exactly what the clip inside
  MultiSteps sees (above max_grad_norm means the step was clipped).
  """
  n = state.mini_step.astype(jnp.float32)
  return optax.tree.norm(jax.tree.map(lambda a, g: a + (g - a) / (n + 1.0), state.acc_grads, grads))


def flush_leftover(
  optim_cfg: OptimCfg, grad_accum: int, state: optax.MultiStepsState, params: Params
) -> tuple[Params, optax.MultiStepsState]:
  """Steps once on the m < grad_accum minibatches still accumulated (end of training).

  The reference's leftover gradient is Σ_i g_i / grad_accum (each minibatch
  loss was divided by grad_accum), i.e. the accumulated mean scaled by
  m / grad_accum; it is clipped and stepped like any other. With nothing
  pending (m = 0) the updates are zero and the state is unchanged. Jit-able.

  Returns:
    (updates, new_state); apply with `optax.apply_updates(params, updates)`.
  """
  _check_accum(grad_accum)
  inner = make_step_optimizer(optim_cfg)
  m = state.mini_step
  scale = m.astype(jnp.float32) / grad_accum
  grads = jax.tree.map(lambda g, p: (g * scale).astype(p.dtype), state.acc_grads, params)
  updates, inner_state = inner.update(grads, state.inner_opt_state, params)
  pending = m > 0
  updates = jax.tree.map(lambda u: jnp.where(pending, u, jnp.zeros_like(u)), updates)
  new_state = optax.MultiStepsState(
    mini_step=jnp.zeros_like(m),
    gradient_step=state.gradient_step + pending.astype(state.gradient_step.dtype),
    inner_opt_state=jax.tree.map(
      lambda new, old: jnp.where(pending, new, old), inner_state, state.inner_opt_state
    ),
    acc_grads=jax.tree.map(jnp.zeros_like, state.acc_grads),
    skip_state=state.skip_state,
  )
  return updates, new_state
