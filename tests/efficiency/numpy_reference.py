"""Slow, obviously-correct numpy references for the efficiency mechanisms (method §4).

Written straight from docs/method.md §4.1-4.4 with plain loops over rows, heads and
pages, independent of sol_jax's vectorised code. Discrete decisions (kept pages,
kept channels, rounding) also report a `margin`: how far the deciding value was
from flipping. Tests comparing a float64 reference with float32 JAX use it to
prove that a seed has no accidental near-tie.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


# ---- selection and budgets --------------------------------------------------


def top_k_mask_ref(x, k):
  """x >= (k-th largest of each row along the last axis). k: int or [rows] ints."""
  x = np.asarray(x)
  rows = x.reshape(-1, x.shape[-1])
  ks = np.broadcast_to(np.asarray(k), x.shape[:-1]).reshape(-1)
  out = np.zeros(rows.shape, bool)
  for i, (row, ki) in enumerate(zip(rows, ks)):
    threshold = np.sort(row)[::-1][ki - 1]
    out[i] = row >= threshold
  return out.reshape(x.shape)


def token_budget_ref(kappa, kv_len: int) -> int:
  """n = ceil(κ·K) with κ and K as fp32, clamped to [0, K], then at least 1."""
  n = int(np.ceil(F32(kappa) * F32(kv_len)))
  return max(min(n, kv_len), 1)


def prune_count_ref(rho, width: int, dtype=np.float32) -> int:
  """k = ceil(ρ·D) with ρ and D cast to the activation dtype and multiplied there."""
  dtype = np.dtype(dtype)
  product = np.asarray(rho).astype(dtype) * np.asarray(width).astype(dtype)
  assert product.dtype == dtype
  return min(max(int(np.ceil(float(product))), 1), width)


# ---- attention sparsity (§4.2) ---------------------------------------------


def quest_keep_ref(q, keys, kappa, page_size: int):
  """Quest mask for one row and its current token (method §4.2.1).

  q: [H, dh] RoPE'd query of the current token. keys: [K, Hkv, dh] the whole
  visible key sequence (prefix then suffix, current token last).
  Returns (keep [H, K] bool, margin): margin is the smallest gap between a
  head's threshold score and its best dropped page (inf if none was dropped).
  """
  q = np.asarray(q, np.float64)
  keys = np.asarray(keys, np.float64)
  heads, dh = q.shape
  kv_len, kv_heads, _ = keys.shape
  group = heads // kv_heads
  keys = np.repeat(keys, group, axis=1)  # query head h reads kv head h // group
  n = token_budget_ref(kappa, kv_len)
  total_pages = math.ceil(kv_len / page_size)
  n_pages = min(math.ceil(n / page_size), total_pages)
  keep = np.zeros((heads, kv_len), bool)
  margin = math.inf
  for h in range(heads):
    scores = []
    for p in range(total_pages):
      page = keys[p * page_size : min((p + 1) * page_size, kv_len), h]  # valid keys only
      low, high = page.min(axis=0), page.max(axis=0)
      scores.append(sum(max(q[h, d] * high[d], q[h, d] * low[d]) for d in range(dh)))
    threshold = sorted(scores, reverse=True)[n_pages - 1]
    for p, score in enumerate(scores):
      if score >= threshold:
        keep[h, p * page_size : min((p + 1) * page_size, kv_len)] = True
      else:
        margin = min(margin, threshold - score)
    if not keep[h].any():
      keep[h, kv_len - 1] = True  # fallback: the current token
  return keep, margin


def protect_sink_window_ref(keep, sink: int, window: int):
  """keep [..., K] with positions [0, Ts) and the last Tw+1 forced on."""
  keep = np.array(keep, bool)
  kv_len = keep.shape[-1]
  for pos in range(kv_len):
    if pos < sink or pos >= kv_len - window - 1:
      keep[..., pos] = True
  return keep


def recency_keep_ref(kv_len: int, kappa, sink: int, window: int):
  """Sink plus a κ-wide sliding window (method §4.2.2) -> keep [K]."""
  if kv_len <= sink + window + 1:
    return np.ones(kv_len, bool)
  n_old = kv_len - sink - window - 1
  n_e = int(np.ceil(F32(kappa) * F32(n_old)))
  start = max(sink, kv_len - window - 1 - n_e)
  return np.array([pos < sink or start <= pos < kv_len for pos in range(kv_len)])


def relevancy_keep_ref(logits, kappa, sink: int, window: int):
  """Oracle top-κ by exact logit (method §4.2.3). logits [K] over valid positions."""
  logits = np.asarray(logits)
  kv_len = len(logits)
  always = np.array([pos < sink or pos >= kv_len - window - 2 for pos in range(kv_len)])
  eligible = ~always
  n_elig = int(eligible.sum())
  k = int(np.ceil(F32(kappa) * F32(n_elig)))
  keep = always.copy()
  if k > 0:
    threshold = np.sort(logits[eligible])[::-1][k - 1]
    keep |= eligible & (logits >= threshold)
  return keep


# ---- MLP compression (§4.3, §4.4) ------------------------------------------


def prune_ref(u, rho, count_dtype=np.float32):
  """Zeroes all but the channels with |u_i| >= k-th largest |u| (one token u [D]).

  Returns (pruned u, margin): margin = k-th largest |u| minus the best dropped one.
  """
  u = np.asarray(u)
  k = prune_count_ref(rho, u.shape[-1], count_dtype)
  score = np.abs(u.astype(np.float64))
  threshold = np.sort(score)[::-1][k - 1]
  kept = score >= threshold
  margin = threshold - score[~kept].max() if (~kept).any() else math.inf
  return np.where(kept, u, np.zeros_like(u)), margin


def fake_quantize_ref(y, bits: int):
  """Symmetric per-token absmax fake quantization of one token y [D] (method §4.4).

  Computes in fp32 (in fp64 if y is fp64) and casts back to y's dtype. Returns
  (ŷ, margin): margin is the closest y came to a rounding boundary (k + 1/2)·s.
  """
  y = np.asarray(y)
  if bits >= 16:
    return y.copy(), math.inf
  work = np.float64 if y.dtype == np.float64 else np.float32
  yw = y.astype(work)
  qmax = work(2 ** (bits - 1) - 1)
  scale = max(np.abs(yw).max(), work(1e-8)) / qmax
  ratio = yw / scale
  levels = np.clip(np.round(ratio), -qmax, qmax)  # np.round rounds half to even
  inside = np.abs(ratio) < qmax
  frac = np.abs(np.abs(ratio[inside]) % 1.0 - 0.5)
  margin = frac.min() * scale if frac.size else math.inf
  return (scale * levels).astype(y.dtype), margin


# ---- one whole controlled decode step (§4.1) --------------------------------


def _rms_norm(x, scale, eps):
  return x / np.sqrt(np.mean(x * x) + eps) * scale


def _rope(x, position: int, theta: float):
  """Rotate-half RoPE on x [heads, dh]: pairs (i, i + dh/2) rotate by pos·θ^(-2i/dh)."""
  dh = x.shape[-1]
  half = dh // 2
  out = np.empty_like(x)
  for i in range(half):
    angle = position * theta ** (-2.0 * i / dh)
    c, s = math.cos(angle), math.sin(angle)
    out[:, i] = x[:, i] * c - x[:, i + half] * s
    out[:, i + half] = x[:, i + half] * c + x[:, i] * s
  return out


def _silu(x):
  return x / (1.0 + np.exp(-x))


def decode_step_ref(
  params, cfg, token: int, position: int, past_k, past_v, control=None, page_size: int = 8
):
  """One token of one row through the whole Llama in fp64.

  past_k/past_v: per layer, [n_past, Hkv, dh] keys (RoPE'd) / values of every
  earlier position (prefix then suffix). control: None (dense) or (κ, ρ, bits),
  applied in every layer with Quest attention sparsity.
  Returns (logits [V], hidden [D], new_k [L, Hkv, dh], new_v, margins dict).
  """
  p = {k: np.asarray(v, np.float64) for k, v in _flatten(params).items()}
  heads, kv_heads, dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  group = heads // kv_heads
  x = p["embed/embedding"][token]
  new_k, new_v = [], []
  margins = {"quest": math.inf, "prune": math.inf, "quant": math.inf}
  for layer in range(cfg.num_layers):
    w = lambda name: p[f"layers/{name}"][layer]
    h = _rms_norm(x, w("attn_norm/scale"), cfg.rms_norm_eps)
    q = _rope((h @ w("attn/q_proj/kernel")).reshape(heads, dh), position, cfg.rope_theta)
    k = _rope((h @ w("attn/k_proj/kernel")).reshape(kv_heads, dh), position, cfg.rope_theta)
    v = (h @ w("attn/v_proj/kernel")).reshape(kv_heads, dh)
    new_k.append(k)
    new_v.append(v)
    past = lambda cache: np.asarray(cache[layer], np.float64).reshape(-1, kv_heads, dh)
    keys = np.concatenate([past(past_k), k[None]])  # [n_past + 1, Hkv, dh]
    values = np.concatenate([past(past_v), v[None]])
    if control is None:
      keep = np.ones((heads, len(keys)), bool)
    else:
      keep, margin = quest_keep_ref(q, keys, control[0], page_size)
      margins["quest"] = min(margins["quest"], margin)
    ctx = np.zeros((heads, dh))
    for head in range(heads):
      kv = head // group
      logits = keys[:, kv] @ q[head] / math.sqrt(dh)
      logits = np.where(keep[head], logits, -np.inf)
      probs = np.exp(logits - logits.max())
      probs /= probs.sum()
      ctx[head] = probs @ values[:, kv]
    x = x + ctx.reshape(-1) @ w("attn/o_proj/kernel")
    u = _rms_norm(x, w("mlp_norm/scale"), cfg.rms_norm_eps)
    if control is not None:
      u, margin = prune_ref(u, control[1])
      margins["prune"] = min(margins["prune"], margin)
    act = _silu(u @ w("mlp/gate_proj/kernel")) * (u @ w("mlp/up_proj/kernel"))
    y = act @ w("mlp/down_proj/kernel")
    if control is not None:
      y, margin = fake_quantize_ref(y, int(control[2]))
      margins["quant"] = min(margins["quant"], margin)
    x = x + y
  hidden = _rms_norm(x, p["final_norm/scale"], cfg.rms_norm_eps)
  return hidden @ p["lm_head/kernel"], hidden, np.stack(new_k), np.stack(new_v), margins


def _flatten(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) or hasattr(value, "items"):
      out.update(_flatten(value, name + "/"))
    else:
      out[name] = value
  return out
