"""The SOL policy: a small causal transformer over per-step observations.

Method §8.2/§8.3. One Linen module serves both execution modes: a chunk of L
observations at step offset `start`, attending either to itself (sequence mode,
the update) or to a preallocated per-policy KV cache (step mode, rollouts and
inference). Step mode is sequence mode with L = 1 and the earlier keys read from
the cache, so the two agree up to float summation order.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sol_jax.policy.observation import NUM_AXES, PolicyObs

Params = Any

_PRECISIONS = {
  "default": jax.lax.Precision.DEFAULT,
  "high": jax.lax.Precision.HIGH,
  "highest": jax.lax.Precision.HIGHEST,
}


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
  """Policy dimensions. Defaults are the reference's (method §8.2)."""

  num_actions: int  # A; the BOS previous-action index is A
  obs_hidden_dim: int  # D, width of the LM's final-norm hidden state
  embed_dim: int  # D_emb, width of the LM's input-embedding rows
  d_model: int = 512
  num_heads: int = 4
  num_layers: int = 1
  mlp_ratio: int = 4
  action_embed_dim: int = 32
  scalar_dim: int = 8
  scalar_embed_dim: int = 64
  budget_hidden_dim: int = 32  # budget head 3 -> 32 -> A (method §8.2 item 8)
  max_len: int = 1024  # position-table size (`policy_max_len`), must exceed T
  temperature: float = 1.3
  layer_norm_eps: float = 1e-5  # PyTorch's (Flax's default is 1e-6)
  # Full fp32 matmuls by default: the policy is tiny, and GPU/TPU default
  # precision (TF32/bf16 passes) would make rollout and update log-probs differ.
  matmul_precision: str = "highest"

  def __post_init__(self):
    for name in (
      "num_actions",
      "obs_hidden_dim",
      "embed_dim",
      "d_model",
      "num_heads",
      "num_layers",
      "mlp_ratio",
      "action_embed_dim",
      "scalar_dim",
      "scalar_embed_dim",
      "budget_hidden_dim",
      "max_len",
    ):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"PolicyConfig.{name} must be a positive int, got {value!r}.")
    if self.d_model % self.num_heads:
      raise ValueError(
        f"PolicyConfig.d_model={self.d_model} must be divisible by num_heads={self.num_heads}."
      )
    for name in ("temperature", "layer_norm_eps"):
      if not getattr(self, name) > 0:
        raise ValueError(f"PolicyConfig.{name} must be > 0, got {getattr(self, name)}.")
    if self.matmul_precision not in _PRECISIONS:
      raise ValueError(
        f"PolicyConfig.matmul_precision={self.matmul_precision!r}; choose one of "
        f"{sorted(_PRECISIONS)}."
      )

  @classmethod
  def from_section(cls, section: Any, **sizes: int) -> "PolicyConfig":
    """From the config's `policy` section, every key of which is a field here,
    plus what only the LM and grid know (num_actions, obs_hidden_dim, embed_dim)."""
    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f"policy config keys {unknown} have no PolicyConfig field to set.")
    return cls(**values, **sizes)

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads

  @property
  def bos_action(self) -> int:
    return self.num_actions

  @property
  def obs_input_dim(self) -> int:
    """Width of [h, e, encoded scalars, action embedding]."""
    return self.obs_hidden_dim + self.embed_dim + self.scalar_embed_dim + self.action_embed_dim

  @property
  def precision(self) -> jax.lax.Precision:
    return _PRECISIONS[self.matmul_precision]


class PolicyCache(NamedTuple):
  """Per-layer self-attention keys/values, preallocated to `max_steps` slots."""

  keys: jax.Array  # [layers, N, S, heads, head_dim]
  values: jax.Array  # [layers, N, S, heads, head_dim]


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
  """PyTorch's default Linear init for weights and biases: U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _linear(
  cfg: PolicyConfig,
  features: int,
  fan_in: int,
  *,
  zero_bias: bool = False,
  name: Optional[str] = None,
) -> nn.Dense:
  return nn.Dense(
    features,
    precision=cfg.precision,
    kernel_init=torch_uniform(fan_in),
    bias_init=nn.initializers.zeros if zero_bias else torch_uniform(fan_in),
    name=name,
  )


def _layer_norm(
  name: Optional[str] = None, eps: float = PolicyConfig.layer_norm_eps
) -> nn.LayerNorm:
  # Two-pass variance, as PyTorch computes it.
  return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


def _gelu(x: jax.Array) -> jax.Array:
  return nn.gelu(x, approximate=False)  # exact erf GELU, as torch.nn.GELU()


class CausalSelfAttention(nn.Module):
  """Bias-free multi-head causal self-attention with an optional KV cache."""

  cfg: PolicyConfig

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    positions: jax.Array,
    kv: Optional[tuple[jax.Array, jax.Array]] = None,
    start: Any = 0,
  ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    cfg = self.cfg
    shape = (cfg.d_model, cfg.num_heads, cfg.head_dim)
    wq = self.param("q", torch_uniform(cfg.d_model), shape)
    wk = self.param("k", torch_uniform(cfg.d_model), shape)
    wv = self.param("v", torch_uniform(cfg.d_model), shape)
    wo = self.param("o", torch_uniform(cfg.d_model), (cfg.num_heads, cfg.head_dim, cfg.d_model))
    prec = cfg.precision
    q = jnp.einsum("bqm,mhd->bqhd", x, wq, precision=prec)
    k = jnp.einsum("bqm,mhd->bqhd", x, wk, precision=prec)
    v = jnp.einsum("bqm,mhd->bqhd", x, wv, precision=prec)
    if kv is None:
      keys, values, key_pos = k, v, positions
    else:
      index = (0, start, 0, 0)
      keys = jax.lax.dynamic_update_slice(kv[0], k.astype(kv[0].dtype), index)
      values = jax.lax.dynamic_update_slice(kv[1], v.astype(kv[1].dtype), index)
      key_pos = jnp.arange(keys.shape[1])  # slot s holds step s
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, keys, precision=prec)
    scores = scores / math.sqrt(cfg.head_dim)
    # Unwritten cache slots lie in the future, so the causal test masks them too.
    causal = key_pos[None, :] <= positions[:, None]
    scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
    probs = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs, values, precision=prec)
    return jnp.einsum("bqhd,hdm->bqm", out, wo, precision=prec), (keys, values)


class Block(nn.Module):
  """Pre-LN transformer block: x += MHA(LN(x)); x += FFN(LN(x))."""

  cfg: PolicyConfig

  @nn.compact
  def __call__(self, x, positions, kv=None, start=0):
    cfg, eps = self.cfg, self.cfg.layer_norm_eps
    y, kv = CausalSelfAttention(cfg, name="attn")(_layer_norm("ln1", eps)(x), positions, kv, start)
    x = x + y
    hidden = cfg.d_model * cfg.mlp_ratio
    y = _linear(cfg, hidden, cfg.d_model, name="mlp_in")(_layer_norm("ln2", eps)(x))
    x = x + _linear(cfg, cfg.d_model, hidden, name="mlp_out")(_gelu(y))
    return x, kv


def _budget_offset(cfg: PolicyConfig, targets: jax.Array) -> jax.Array:
  """Budget head 3 -> budget_hidden_dim -> A on raw targets [N, 3] (untempered).

  Called inside a compact method, so its two layers belong to the caller:
  `PolicyNetwork` (params "budget_in" / "budget_out") or `BudgetHead`.
  """
  b = _gelu(
    _linear(cfg, cfg.budget_hidden_dim, NUM_AXES, name="budget_in")(targets.astype(jnp.float32))
  )
  return _linear(cfg, cfg.num_actions, cfg.budget_hidden_dim, name="budget_out")(b)


class BudgetHead(nn.Module):
  """The policy's budget head alone, on the same two param entries as `PolicyNetwork`."""

  cfg: PolicyConfig

  @nn.compact
  def __call__(self, targets: jax.Array) -> jax.Array:
    return _budget_offset(self.cfg, targets)


BUDGET_PARAMS = ("budget_in", "budget_out")  # the budget head's entries in the policy params


class PolicyNetwork(nn.Module):
  """Observations [N, L, ...] at steps start..start+L-1 -> logits [N, L, A]."""

  cfg: PolicyConfig

  @nn.compact
  def __call__(
    self, obs: PolicyObs, start: Any = 0, cache: Optional[PolicyCache] = None, temper: bool = True
  ) -> tuple[jax.Array, Optional[PolicyCache]]:
    cfg = self.cfg
    length = obs.prev_action.shape[1]
    embed_init = nn.initializers.normal(stddev=1.0)  # torch.nn.Embedding: N(0, 1)

    s = _linear(cfg, cfg.scalar_embed_dim, cfg.scalar_dim, name="scalar_in")(
      obs.scalars.astype(jnp.float32)
    )
    s = _layer_norm("scalar_norm", cfg.layer_norm_eps)(_gelu(s))
    a = nn.Embed(
      cfg.num_actions + 1, cfg.action_embed_dim, embedding_init=embed_init, name="action_embed"
    )(obs.prev_action)
    x = jnp.concatenate(
      [obs.hidden.astype(jnp.float32), obs.token_embed.astype(jnp.float32), s, a], axis=-1
    )
    x = _linear(cfg, cfg.d_model, cfg.obs_input_dim, name="obs_proj")(x)
    positions = start + jnp.arange(length)
    x = (
      x
      + nn.Embed(cfg.max_len, cfg.d_model, embedding_init=embed_init, name="pos_embed")(positions)[
        None
      ]
    )

    new_keys, new_values = [], []
    for i in range(cfg.num_layers):
      kv = None if cache is None else (cache.keys[i], cache.values[i])
      x, (k, v) = Block(cfg, name=f"block_{i}")(x, positions, kv, start)
      new_keys.append(k)
      new_values.append(v)
    x = _layer_norm("final_norm", cfg.layer_norm_eps)(x)

    logits = _linear(cfg, cfg.num_actions, cfg.d_model, zero_bias=True, name="policy_head")(x)
    # Budget head on the raw targets: an additive, step-independent logit offset.
    logits = logits + _budget_offset(cfg, obs.targets)[:, None, :]
    if temper:
      logits = logits / cfg.temperature
    if cache is not None:
      cache = PolicyCache(jnp.stack(new_keys), jnp.stack(new_values))
    return logits, cache


def _check_obs(cfg: PolicyConfig, obs: PolicyObs, lead: int) -> None:
  """Static shape checks, so bad input fails with one readable error."""
  if not isinstance(obs, PolicyObs):
    raise ValueError(f"obs must be a PolicyObs, got {type(obs).__name__}.")
  mode = "sequence mode wants [N, T, ...]" if lead == 2 else "step mode wants [N, ...]"
  want = {"hidden": cfg.obs_hidden_dim, "token_embed": cfg.embed_dim, "scalars": cfg.scalar_dim}
  lead_shape = obs.prev_action.shape
  if len(lead_shape) != lead:
    raise ValueError(f"prev_action has shape {lead_shape}; {mode}.")
  if not jnp.issubdtype(obs.prev_action.dtype, jnp.integer):
    raise ValueError(f"prev_action must be integer, got {obs.prev_action.dtype}.")
  for name, width in want.items():
    shape = getattr(obs, name).shape
    if shape != lead_shape + (width,):
      raise ValueError(
        f"obs.{name} has shape {shape}, expected {lead_shape + (width,)} "
        f"({mode}; width from PolicyConfig)."
      )
  if obs.targets.shape != (lead_shape[0], NUM_AXES):
    raise ValueError(f"obs.targets has shape {obs.targets.shape}, expected {(lead_shape[0], 3)}.")


def _dummy_obs(cfg: PolicyConfig) -> PolicyObs:
  return PolicyObs(
    hidden=jnp.zeros((1, 1, cfg.obs_hidden_dim), jnp.float32),
    token_embed=jnp.zeros((1, 1, cfg.embed_dim), jnp.float32),
    scalars=jnp.zeros((1, 1, cfg.scalar_dim), jnp.float32),
    prev_action=jnp.full((1, 1), cfg.bos_action, jnp.int32),
    targets=jnp.ones((1, NUM_AXES), jnp.float32),
  )


@functools.lru_cache(maxsize=8)
def _compiled_init(cfg: PolicyConfig):
  """One jitted init per config: XLA compiles the ~25 initializers once."""
  return jax.jit(lambda key: PolicyNetwork(cfg).init(key, _dummy_obs(cfg))["params"])


def init_params(cfg: PolicyConfig, rng: jax.Array) -> Params:
  """Fresh PyTorch-style parameters."""
  return _compiled_init(cfg)(rng)


def count_params(cfg: PolicyConfig) -> int:
  """Number of parameters, from shapes only (no allocation)."""
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))


def sequence_logits(
  cfg: PolicyConfig, params: Params, obs: PolicyObs, temper: bool = True
) -> jax.Array:
  """Sequence mode: obs [N, T, ...] at positions 0..T-1 -> logits [N, T, A].

  Logits are divided by `cfg.temperature` unless `temper=False`.
  """
  _check_obs(cfg, obs, lead=2)
  if obs.prev_action.shape[1] > cfg.max_len:
    raise ValueError(
      f"episode length T={obs.prev_action.shape[1]} exceeds "
      f"PolicyConfig.max_len={cfg.max_len}; raise max_len (policy_max_len)."
    )
  logits, _ = PolicyNetwork(cfg).apply({"params": params}, obs, 0, None, temper)
  return logits


def init_step_cache(
  cfg: PolicyConfig, batch: int, max_steps: int, dtype: Any = jnp.float32
) -> PolicyCache:
  """An empty step-mode cache for `batch` rows and steps 0..max_steps-1."""
  if batch < 1:
    raise ValueError(f"batch must be >= 1, got {batch}.")
  if not 1 <= max_steps <= cfg.max_len:
    raise ValueError(f"max_steps={max_steps} must be in [1, PolicyConfig.max_len={cfg.max_len}].")
  shape = (cfg.num_layers, batch, max_steps, cfg.num_heads, cfg.head_dim)
  return PolicyCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def step_logits(
  cfg: PolicyConfig, params: Params, cache: PolicyCache, obs: PolicyObs, t: Any, temper: bool = True
) -> tuple[jax.Array, PolicyCache]:
  """Step mode: one observation per row at step t -> (logits [N, A], cache).

  `t` may be traced (the rollout scan index). Steps past the cache length
  give NaN logits instead of silently overwriting the last slot.
  """
  _check_obs(cfg, obs, lead=1)
  if cache.keys.shape[1] != obs.prev_action.shape[0]:
    raise ValueError(f"cache has {cache.keys.shape[1]} rows, obs has {obs.prev_action.shape[0]}.")
  slots = cache.keys.shape[2]
  if isinstance(t, int) and not 0 <= t < slots:
    raise ValueError(
      f"step t={t} outside the cache's {slots} slots; allocate a longer cache with init_step_cache."
    )
  seq = obs._replace(
    hidden=obs.hidden[:, None],
    token_embed=obs.token_embed[:, None],
    scalars=obs.scalars[:, None],
    prev_action=obs.prev_action[:, None],
  )
  logits, cache = PolicyNetwork(cfg).apply({"params": params}, seq, t, cache, temper)
  logits = jnp.where(jnp.asarray(t) < slots, logits[:, 0], jnp.nan)
  return logits, cache


def log_probs_and_entropy(logits: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Log-prob of `actions` and entropy of Categorical(logits), over the last axis.

  Pass tempered logits: both the PPO ratio and the entropy bonus use the
  tempered distribution (method §9.6, Q9).
  """
  if actions.shape != logits.shape[:-1]:
    raise ValueError(
      f"actions shape {actions.shape} must equal logits shape without the action "
      f"axis, {logits.shape[:-1]}."
    )
  logp_all = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  logp = jnp.take_along_axis(logp_all, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
  return logp, entropy
