"""Optimizer: clip-then-AdamW on the accumulated mean gradient, PyTorch semantics (method §9.7)."""

import jax
import numpy as np
import optax
import pytest
import torch

from sol_jax.config import OptimCfg
from sol_jax.rl import optimizer as opt_lib


def _params(seed=0):
  rng = np.random.default_rng(seed)
  # Names of the leaves that some AdamW setups exclude from decay: here all decay.
  return {
    "embedding": rng.normal(size=(4, 3)).astype(np.float32),
    "dense": {
      "kernel": rng.normal(size=(3, 2)).astype(np.float32),
      "bias": rng.normal(size=(2,)).astype(np.float32),
    },
    "LayerNorm_0": {"scale": np.ones((3,), np.float32) + 0.1},
  }


def _grads(seed, scale):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: (scale * rng.normal(size=p.shape)).astype(np.float32), _params())


def _run_optax(cfg, accum, grads, params, flush):
  tx = opt_lib.make_optimizer(cfg, accum)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for g in grads:
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
  if flush:
    updates, state = opt_lib.flush_leftover(cfg, accum, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _run_torch(cfg, accum, grads, params, flush):
  """The reference loop: backward(L / accum) per minibatch, clip + step every accum."""
  leaves, treedef = jax.tree.flatten(params)
  ps = [torch.nn.Parameter(torch.tensor(np.asarray(p))) for p in leaves]
  opt = torch.optim.AdamW(
    ps, lr=cfg.lr, betas=(cfg.b1, cfg.b2), eps=cfg.eps, weight_decay=cfg.weight_decay
  )

  def step():
    torch.nn.utils.clip_grad_norm_(ps, cfg.max_grad_norm)
    opt.step()
    opt.zero_grad()

  for i, g in enumerate(grads, 1):
    for p, gl in zip(ps, jax.tree.leaves(g)):
      contrib = torch.tensor(np.asarray(gl)) / accum
      p.grad = contrib if p.grad is None else p.grad + contrib
    if i % accum == 0:
      step()
  if flush and len(grads) % accum:
    step()
  return jax.tree.unflatten(treedef, [p.detach().numpy() for p in ps])


@pytest.mark.parametrize("scale", [0.1, 5.0])  # global norm below / above 2.0
def test_two_accumulated_updates_equal_one_step_on_mean(scale):
  cfg = OptimCfg()
  params = _params()
  g1, g2 = _grads(1, scale), _grads(2, scale)
  tx = opt_lib.make_optimizer(cfg, 2)
  state = tx.init(params)
  u1, state = tx.update(g1, state, params)
  assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(u1))
  assert not bool(opt_lib.stepped(state))
  u2, state = tx.update(g2, state, params)
  assert bool(opt_lib.stepped(state))
  plain = opt_lib.make_step_optimizer(cfg)
  mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
  want, _ = plain.update(mean, plain.init(params), params)
  for got, ref in zip(jax.tree.leaves(u2), jax.tree.leaves(want)):
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-7)


def test_weight_decay_on_every_parameter_pytorch_style():
  # Zero gradient: Adam's term is 0, so p <- p - lr * wd * p for every leaf.
  cfg = OptimCfg(lr=1e-2, weight_decay=0.01)
  params = _params()
  zeros = jax.tree.map(np.zeros_like, params)
  new, _ = _run_optax(cfg, 1, [zeros], params, flush=False)
  for got, p in zip(jax.tree.leaves(new), jax.tree.leaves(params)):
    np.testing.assert_allclose(got, p - 1e-2 * 0.01 * p, rtol=1e-7)


def test_clip_acts_on_accumulated_gradient_at_2():
  cfg = OptimCfg()
  params = {"w": np.zeros((2,), np.float32)}
  tx = opt_lib.make_optimizer(cfg, 2)
  state = tx.init(params)
  # Per-minibatch norms 10 and 1: clipping each first would give mean [1, 0.5].
  _, state = tx.update({"w": np.array([10.0, 0.0], np.float32)}, state, params)
  _, state = tx.update({"w": np.array([0.0, 1.0], np.float32)}, state, params)
  mean = np.array([5.0, 0.5])
  want = mean * 2.0 / np.linalg.norm(mean)  # clipped to global norm exactly 2
  mu = optax.tree.get(state.inner_opt_state, "mu")["w"]
  np.testing.assert_allclose(np.asarray(mu) / (1 - cfg.b1), want, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(mu) / (1 - cfg.b1)), 2.0, rtol=1e-5)


def test_no_clip_below_threshold():
  cfg = OptimCfg()
  params = {"w": np.zeros((2,), np.float32)}
  tx = opt_lib.make_optimizer(cfg, 1)
  _, state = tx.update({"w": np.array([1.2, -1.5], np.float32)}, tx.init(params), params)
  mu = optax.tree.get(state.inner_opt_state, "mu")["w"]
  np.testing.assert_allclose(np.asarray(mu) / (1 - cfg.b1), [1.2, -1.5], rtol=1e-6)


@pytest.mark.parametrize("big,small", [(3.0, 0.2), (0.05, 0.02)])  # with / without clipping
def test_matches_torch_adamw_with_accumulation_clip_and_leftover(big, small):
  # lr 1e-2 makes decay and moment differences visible; 8 minibatches at
  # accum 3 = 2 full steps + a leftover of 2 flushed at the end.
  cfg = OptimCfg(lr=1e-2)
  params = _params(3)
  grads = [_grads(10 + i, big if i % 2 else small) for i in range(8)]
  got, state = _run_optax(cfg, 3, grads, params, flush=True)
  want = _run_torch(cfg, 3, grads, params, flush=True)
  assert int(state.gradient_step) == 3 and int(state.mini_step) == 0
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6)


def test_window_grad_norm_is_what_the_clip_sees():
  """On emitting calls: the torch reference's clip_grad_norm_ total norm of sum(g / accum)."""
  cfg, accum = OptimCfg(), 3
  grads = [_grads(s, 1.0 + s) for s in range(7)]
  tx = opt_lib.make_optimizer(cfg, accum)
  params = _params()
  state = tx.init(params)
  for i, g in enumerate(grads):
    norm = opt_lib.window_grad_norm(state, g)
    _, new_state = tx.update(g, state, params)
    emits = opt_lib.stepped(new_state)
    window = grads[i - i % accum : i + 1]
    flat = np.concatenate(
      [
        np.ravel(sum(np.asarray(x) for x in leaf) / len(window))
        for leaf in zip(*map(jax.tree.leaves, window))
      ]
    )
    assert bool(emits) == ((i + 1) % accum == 0)
    np.testing.assert_allclose(float(norm), np.linalg.norm(flat), rtol=1e-5)
    if emits:  # the reference accumulates backward(L / accum), then clips
      leaves = list(zip(*map(jax.tree.leaves, window)))
      ps = [torch.nn.Parameter(torch.zeros(np.shape(leaf[0]))) for leaf in leaves]
      for p_, leaf in zip(ps, leaves):
        p_.grad = torch.tensor(sum(np.asarray(x) / accum for x in leaf))
      total = torch.nn.utils.clip_grad_norm_(ps, cfg.max_grad_norm)
      np.testing.assert_allclose(float(norm), float(total), rtol=1e-5)
    state = new_state


def test_flush_with_nothing_pending_is_a_no_op():
  cfg = OptimCfg()
  params = _params()
  _, state = _run_optax(cfg, 2, [_grads(1, 1.0), _grads(2, 1.0)], params, flush=False)
  updates, new_state = jax.jit(opt_lib.flush_leftover, static_argnums=(0, 1))(cfg, 2, state, params)
  assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
  for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("accum", [0, -2, 1.5, True])
def test_bad_grad_accum(accum):
  with pytest.raises(ValueError, match="grad_accum"):
    opt_lib.make_optimizer(OptimCfg(), accum)


def test_bad_cfg():
  with pytest.raises(ValueError, match="OptimCfg"):
    opt_lib.make_optimizer({"lr": 1e-4}, 2)
