"""Policy network: parameter counts, PyTorch init and parity, step == sequence."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax.flatten_util import ravel_pytree

from sol_jax.policy import network
from sol_jax.policy.network import PolicyConfig
from sol_jax.policy.observation import PolicyObs

torch.set_num_threads(1)

# A tiny config with every dimension distinct, so a transposed or swapped
# weight cannot go unnoticed; two layers to exercise the per-layer cache.
TINY = PolicyConfig(
  num_actions=7,
  obs_hidden_dim=12,
  embed_dim=10,
  d_model=16,
  num_heads=4,
  num_layers=2,
  mlp_ratio=3,
  action_embed_dim=6,
  scalar_embed_dim=9,
  max_len=11,
  temperature=1.3,
)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _random_obs(cfg, key, n, t):
  ks = jax.random.split(key, 5)
  prev = jax.random.randint(ks[3], (n, t), 0, cfg.num_actions)
  prev = prev.at[:, 0].set(cfg.bos_action)
  return PolicyObs(
    hidden=jax.random.normal(ks[0], (n, t, cfg.obs_hidden_dim)),
    token_embed=jax.random.normal(ks[1], (n, t, cfg.embed_dim)),
    scalars=jax.random.uniform(ks[2], (n, t, cfg.scalar_dim)),
    prev_action=prev,
    targets=jax.random.uniform(ks[4], (n, 3), minval=0.1, maxval=1.0),
  )


def _random_params(cfg, key):
  """Init params with every bias/LayerNorm perturbed, so parity covers them."""
  params = network.init_params(cfg, key)

  flat, unravel = ravel_pytree(params)
  noise = np.random.default_rng(99).normal(size=flat.shape).astype(np.float32)
  return unravel(flat + 0.1 * noise)


_N, _T = 3, 6  # one obs shape for most tests: each new shape is a new compile
_seq_logits = jax.jit(network.sequence_logits, static_argnums=(0, 3))


@pytest.fixture(scope="module")
def tiny():
  # An rbg key: XLA:CPU compiles threefry's unrolled rounds several times slower.
  return _random_params(TINY, jax.random.key(1, impl="rbg"))


# ----------------------------------------------------------------------------
# Parameter counts (method §8.2 table, minus the reference's 513-parameter value head)


@pytest.mark.parametrize(
  "actions,dim,max_len,reference",
  [
    (1560, 2048, 1024, 6_725_521),  # 1B FL (vMax)
    (336, 2048, 1024, 6_018_049),  # 1B horizon
    (27, 2048, 1024, 5_839_447),  # 1B 3L
    (8, 2048, 1024, 5_828_465),  # 1B 2L
    (1560, 3072, 512, 7_511_953),  # 3B FL
    (1560, 4096, 512, 8_560_529),  # 8B-Instruct FL
    (11, 4096, 512, 7_665_207),  # Distil-8B
  ],
)
def test_param_count_matches_reference_minus_value_head(actions, dim, max_len, reference):
  cfg = PolicyConfig(actions, dim, dim, max_len=max_len)
  assert network.count_params(cfg) == reference - 513


# ----------------------------------------------------------------------------
# Initialisation (PyTorch conventions)


@pytest.fixture(scope="module")
def ref_params():
  cfg = PolicyConfig(num_actions=1560, obs_hidden_dim=2048, embed_dim=2048)
  return cfg, network.init_params(cfg, jax.random.PRNGKey(0))


def _check_uniform(x, fan_in):
  x = np.asarray(x)
  bound = 1.0 / math.sqrt(fan_in)
  assert np.abs(x).max() <= bound
  assert np.abs(x).max() > 0.98 * bound  # uniform fills the interval
  if x.size > 10_000:
    np.testing.assert_allclose(x.std(), bound / math.sqrt(3), rtol=0.01)
    assert abs(x.mean()) < 0.01 * bound


def test_init_linear_uniform_fan_in(ref_params):
  cfg, p = ref_params
  assert p["obs_proj"]["kernel"].shape == (4192, 512)
  _check_uniform(p["obs_proj"]["kernel"], 4192)
  _check_uniform(p["obs_proj"]["bias"], 4192)
  _check_uniform(p["scalar_in"]["kernel"], 8)
  _check_uniform(p["block_0"]["mlp_in"]["kernel"], 512)
  _check_uniform(p["block_0"]["mlp_out"]["kernel"], 2048)
  _check_uniform(p["block_0"]["mlp_out"]["bias"], 2048)
  for name in "qkvo":
    _check_uniform(p["block_0"]["attn"][name], 512)
  _check_uniform(p["policy_head"]["kernel"], 512)
  _check_uniform(p["budget_in"]["kernel"], 3)
  _check_uniform(p["budget_out"]["kernel"], 32)
  _check_uniform(p["budget_out"]["bias"], 32)


def test_init_embeddings_layernorm_and_head_bias(ref_params):
  cfg, p = ref_params
  for name, rows, tol in (("pos_embed", 1024, 0.01), ("action_embed", 1561, 0.02)):
    table = np.asarray(p[name]["embedding"])
    assert table.shape[0] == rows
    assert abs(table.std() - 1.0) < tol and abs(table.mean()) < tol
  assert np.all(np.asarray(p["policy_head"]["bias"]) == 0.0)
  for ln in (p["scalar_norm"], p["block_0"]["ln1"], p["block_0"]["ln2"], p["final_norm"]):
    assert np.all(np.asarray(ln["scale"]) == 1.0)
    assert np.all(np.asarray(ln["bias"]) == 0.0)


def test_layernorm_eps_is_1e5():
  # An input whose variance is comparable to eps makes 1e-5 vs 1e-6 visible.
  x = np.random.default_rng(0).normal(size=(3, 16)) * 3e-3
  ln = network._layer_norm()
  got = np.asarray(ln.apply(ln.init(jax.random.PRNGKey(0), x), x))

  def manual(eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)

  np.testing.assert_allclose(got, manual(1e-5), atol=1e-5)
  assert np.abs(got - manual(1e-6)).max() > 1e-2


# ----------------------------------------------------------------------------
# Parity with a PyTorch module written from primitives


class TorchPolicy(torch.nn.Module):
  """Independent PyTorch statement of method §8.2 (sequence mode only)."""

  def __init__(self, cfg):
    super().__init__()
    nn = torch.nn
    self.cfg = cfg
    self.scalar_in = nn.Linear(cfg.scalar_dim, cfg.scalar_embed_dim)
    self.scalar_norm = nn.LayerNorm(cfg.scalar_embed_dim, eps=1e-5)
    self.action_embed = nn.Embedding(cfg.num_actions + 1, cfg.action_embed_dim)
    self.obs_proj = nn.Linear(cfg.obs_input_dim, cfg.d_model)
    self.pos_embed = nn.Embedding(cfg.max_len, cfg.d_model)
    self.blocks = nn.ModuleList()
    for _ in range(cfg.num_layers):
      blk = nn.Module()
      blk.ln1 = nn.LayerNorm(cfg.d_model, eps=1e-5)
      blk.ln2 = nn.LayerNorm(cfg.d_model, eps=1e-5)
      for name in "qkvo":
        setattr(blk, name, nn.Linear(cfg.d_model, cfg.d_model, bias=False))
      blk.mlp_in = nn.Linear(cfg.d_model, cfg.d_model * cfg.mlp_ratio)
      blk.mlp_out = nn.Linear(cfg.d_model * cfg.mlp_ratio, cfg.d_model)
      self.blocks.append(blk)
    self.final_norm = nn.LayerNorm(cfg.d_model, eps=1e-5)
    self.policy_head = nn.Linear(cfg.d_model, cfg.num_actions)
    self.budget_in = nn.Linear(3, 32)
    self.budget_out = nn.Linear(32, cfg.num_actions)

  def forward(self, h, e, s, prev, targets):
    cfg = self.cfg
    n, t, _ = h.shape
    s = self.scalar_norm(F.gelu(self.scalar_in(s)))
    x = torch.cat([h, e, s, self.action_embed(prev)], -1)
    x = self.obs_proj(x) + self.pos_embed(torch.arange(t))[None]
    heads, hd = cfg.num_heads, cfg.head_dim
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    for blk in self.blocks:
      y = blk.ln1(x)
      q, k, v = (getattr(blk, c)(y).view(n, t, heads, hd).transpose(1, 2) for c in "qkv")
      att = q @ k.transpose(-1, -2) / math.sqrt(hd)
      att = torch.softmax(att.masked_fill(future, float("-inf")), -1)
      x = x + blk.o((att @ v).transpose(1, 2).reshape(n, t, heads * hd))
      x = x + blk.mlp_out(F.gelu(blk.mlp_in(blk.ln2(x))))
    logits = self.policy_head(self.final_norm(x))
    logits = logits + self.budget_out(F.gelu(self.budget_in(targets)))[:, None]
    return logits / cfg.temperature


def _load_torch(cfg, params):
  model = TorchPolicy(cfg)
  t = lambda x: torch.tensor(np.asarray(x))
  m = cfg.d_model

  def dense(mod, p):
    mod.weight.data = t(p["kernel"]).T.contiguous()
    mod.bias.data = t(p["bias"])

  def norm(mod, p):
    mod.weight.data, mod.bias.data = t(p["scale"]), t(p["bias"])

  for name in ("scalar_in", "obs_proj", "policy_head", "budget_in", "budget_out"):
    dense(getattr(model, name), params[name])
  norm(model.scalar_norm, params["scalar_norm"])
  norm(model.final_norm, params["final_norm"])
  model.action_embed.weight.data = t(params["action_embed"]["embedding"])
  model.pos_embed.weight.data = t(params["pos_embed"]["embedding"])
  for i, blk in enumerate(model.blocks):
    p = params[f"block_{i}"]
    norm(blk.ln1, p["ln1"])
    norm(blk.ln2, p["ln2"])
    dense(blk.mlp_in, p["mlp_in"])
    dense(blk.mlp_out, p["mlp_out"])
    for c in "qkv":
      getattr(blk, c).weight.data = t(p["attn"][c]).reshape(m, m).T.contiguous()
    blk.o.weight.data = t(p["attn"]["o"]).reshape(m, m).T.contiguous()
  return model


def test_sequence_mode_matches_pytorch(tiny):
  cfg, params = TINY, tiny
  obs = _random_obs(cfg, jax.random.PRNGKey(2), _N, _T)
  got = np.asarray(_seq_logits(cfg, params, obs))
  model = _load_torch(cfg, params)
  with torch.no_grad():
    want = model(
      *(
        torch.tensor(np.asarray(x))
        for x in (
          obs.hidden,
          obs.token_embed,
          obs.scalars,
          np.asarray(obs.prev_action, np.int64),
          obs.targets,
        )
      )
    ).numpy()
  assert got.shape == (_N, _T, cfg.num_actions)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  raw = np.asarray(_seq_logits(cfg, params, obs, False))
  np.testing.assert_allclose(raw / cfg.temperature, want, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------
# Step mode == sequence mode


def _run_steps(cfg, params, obs, max_steps):
  n, t = obs.prev_action.shape
  step = jax.jit(functools.partial(network.step_logits, cfg))

  def body(cache, i):
    obs_t = jax.tree_util.tree_map(lambda x: x[:, i], obs._replace(targets=None))
    logits, cache = step(params, cache, obs_t._replace(targets=obs.targets), i)
    return cache, logits

  cache = network.init_step_cache(cfg, n, max_steps)
  _, logits = jax.lax.scan(body, cache, jnp.arange(t))
  return jnp.swapaxes(logits, 0, 1)  # [T, N, A] -> [N, T, A]


@pytest.mark.parametrize("max_steps", [6, 11])
def test_step_mode_equals_sequence_mode(tiny, max_steps):
  cfg, params = TINY, tiny
  obs = _random_obs(cfg, jax.random.PRNGKey(4), _N, _T)
  actions = jax.random.randint(jax.random.PRNGKey(5), (_N, _T), 0, cfg.num_actions)
  seq = _seq_logits(cfg, params, obs)
  stp = _run_steps(cfg, params, obs, max_steps)
  lp_seq, ent_seq = network.log_probs_and_entropy(seq, actions)
  lp_stp, ent_stp = network.log_probs_and_entropy(stp, actions)
  np.testing.assert_allclose(stp, seq, atol=1e-5, rtol=0)
  np.testing.assert_allclose(lp_stp, lp_seq, atol=1e-5, rtol=0)
  np.testing.assert_allclose(ent_stp, ent_seq, atol=1e-5, rtol=0)


def test_causal_future_steps_do_not_leak(tiny):
  cfg, params = TINY, tiny
  obs = _random_obs(cfg, jax.random.PRNGKey(7), _N, _T)
  changed = obs._replace(hidden=obs.hidden.at[:, 3].add(1.0))
  a = np.asarray(_seq_logits(cfg, params, obs))
  b = np.asarray(_seq_logits(cfg, params, changed))
  np.testing.assert_array_equal(a[:, :3], b[:, :3])
  assert np.abs(a[:, 3:] - b[:, 3:]).min() > 0


def test_step_past_cache_gives_nan(tiny):
  cfg, params = TINY, tiny
  obs = _random_obs(cfg, jax.random.PRNGKey(1), _N, _T)
  obs_t = obs._replace(
    hidden=obs.hidden[:, 0],
    token_embed=obs.token_embed[:, 0],
    scalars=obs.scalars[:, 0],
    prev_action=obs.prev_action[:, 0],
  )
  cache = network.init_step_cache(cfg, _N, 3)
  step = jax.jit(functools.partial(network.step_logits, cfg))
  assert np.all(np.isfinite(step(params, cache, obs_t, 2)[0]))
  assert np.all(np.isnan(step(params, cache, obs_t, 3)[0]))
  with pytest.raises(ValueError, match="outside the cache"):
    network.step_logits(cfg, params, cache, obs_t, 3)


def test_every_parameter_gets_a_gradient(tiny):
  cfg, params = TINY, tiny
  obs = _random_obs(cfg, jax.random.PRNGKey(9), _N, _T)
  actions = jnp.zeros((_N, _T), jnp.int32)

  def loss(p):
    lp, ent = network.log_probs_and_entropy(network.sequence_logits(cfg, p, obs), actions)
    return -lp.mean() - 0.05 * ent.mean()

  grads = jax.jit(jax.grad(loss))(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(g)), path
    assert np.abs(g).max() > 0, path


# ----------------------------------------------------------------------------
# Helpers and input validation


def test_log_probs_and_entropy_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 9)).astype(np.float32) * 3
  actions = rng.integers(0, 9, size=(3, 4))
  lp, ent = network.log_probs_and_entropy(jnp.asarray(logits), jnp.asarray(actions))
  z = logits.astype(np.float64)
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  want_lp = np.log(np.take_along_axis(p, actions[..., None], -1)[..., 0])
  np.testing.assert_allclose(lp, want_lp, atol=1e-5)
  np.testing.assert_allclose(ent, -(p * np.log(p)).sum(-1), atol=1e-5)
  with pytest.raises(ValueError, match="actions shape"):
    network.log_probs_and_entropy(jnp.asarray(logits), jnp.asarray(actions[:, :2]))


def test_bad_inputs_raise_clear_errors(tiny):
  cfg, params = TINY, tiny
  obs = _random_obs(cfg, jax.random.PRNGKey(1), _N, _T)
  with pytest.raises(ValueError, match="obs.hidden"):
    network.sequence_logits(cfg, params, obs._replace(hidden=obs.hidden[..., :5]))
  with pytest.raises(ValueError, match="targets"):
    network.sequence_logits(cfg, params, obs._replace(targets=obs.targets[:, :2]))
  with pytest.raises(ValueError, match="integer"):
    network.sequence_logits(
      cfg, params, obs._replace(prev_action=obs.prev_action.astype(jnp.float32))
    )
  long = jax.tree_util.tree_map(lambda x: jnp.repeat(x, 2, axis=1), obs._replace(targets=None))
  with pytest.raises(ValueError, match="max_len"):
    network.sequence_logits(cfg, params, long._replace(targets=obs.targets))
  with pytest.raises(ValueError, match="max_steps"):
    network.init_step_cache(cfg, 2, cfg.max_len + 1)
  with pytest.raises(ValueError, match="step mode"):
    network.step_logits(cfg, params, network.init_step_cache(cfg, _N, 4), obs, 0)
  with pytest.raises(ValueError, match="divisible"):
    PolicyConfig(5, 8, 8, d_model=30, num_heads=4)
  with pytest.raises(ValueError, match="temperature"):
    PolicyConfig(5, 8, 8, temperature=0.0)


def test_from_section_builds_every_policy_key_into_the_network():
  from sol_jax.config import PolicyCfg

  section = PolicyCfg(
    d_model=16,
    num_heads=2,
    mlp_ratio=2,
    action_embed_dim=6,
    scalar_embed_dim=5,
    budget_hidden_dim=7,
    max_len=20,
    layer_norm_eps=0.5,
  )
  cfg = PolicyConfig.from_section(section, num_actions=4, obs_hidden_dim=8, embed_dim=6)
  assert (cfg.budget_hidden_dim, cfg.layer_norm_eps, cfg.max_len) == (7, 0.5, 20)
  params = network.init_params(cfg, jax.random.PRNGKey(0))
  assert params["budget_in"]["kernel"].shape == (3, 7)
  assert params["budget_out"]["kernel"].shape == (7, 4)
  assert params["scalar_in"]["kernel"].shape == (8, 5)
  # The section's LayerNorm eps reaches every norm: a larger eps shrinks the output.
  obs = _random_obs(cfg, jax.random.PRNGKey(1), 2, 3)
  small_eps = dataclasses.replace(cfg, layer_norm_eps=1e-5)
  assert not np.allclose(
    network.sequence_logits(cfg, params, obs),
    network.sequence_logits(small_eps, params, obs),
    atol=1e-3,
  )
