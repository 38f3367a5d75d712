"""The policy's front against every baseline at its realized budgets (method §12.2-12.5).

`evaluate_front` runs, over the same report blocks:
1. the policy (any provider, e.g. `policy.PolicyAgent`), one column per
   requested target triple;
2. at every operating point Fixed, N random trials, EMC and DAC, all matched
   to the policy's *realized* (κ̄, ρ̄, η̄) there, and per-step Fixed
   ("fixed_step", matched to the policy's realized budgets at each step t of
   the episode: its positional profile without its reading of the text), and
   "shuffled": the policy's own recorded actions permuted across blocks at
   every step (the same per-step joint action mix and budgets, exactly, but
   no tie to the text: policy vs shuffled is what reading the text buys), plus
   dense -- every point in
   ONE harness call, so each block is prefilled once for all of them -- and
   the same random trials on the selection blocks (one more call), so
   best-of-N is picked there and reported here, with the oracle (picked on the
   report blocks, the reference's number) beside it;
3. optionally the noise floor: the policy's and Fixed's recorded schedules
   replayed in another batch layout (`noise_batch_size`, columns reversed);
   the replayed schedule is identical, so any PPL change is fake-quant and
   kernel noise, not the method.

`front_rows` turns the result into one row per (point, method) with the paired
bootstrap of policy vs that method and, against Fixed, the gap closure.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

import numpy as np

from sol_jax.evaluation import comparison_log
from sol_jax.evaluation.constant import constant_columns, replay_columns, shuffled_columns
from sol_jax.evaluation.fixed import fixed_columns, per_step_realized, step_fixed_columns
from sol_jax.evaluation.intervals import paired_bootstrap
from sol_jax.evaluation.knob import diagonal_path
from sol_jax.evaluation.plan import evaluate_plan
from sol_jax.evaluation.providers import heuristic_columns
from sol_jax.evaluation.random_schedules import BestOfN, best_of_n, random_columns
from sol_jax.evaluation.schedule_eval import ColumnResult, effective_steps, evaluate_columns

METHODS = ("fixed", "fixed_step", "shuffled", "random", "emc", "dac")  # baselines it can run


@dataclasses.dataclass
class FrontPoint:
  requested: tuple[float, float, float]
  policy: ColumnResult
  fixed: Optional[ColumnResult]  # None: that method was not run
  emc: Optional[ColumnResult]
  dac: Optional[ColumnResult]
  random: list[ColumnResult]  # trials on the report blocks
  random_select: list[ColumnResult]  # the same trials on the selection blocks
  best: Optional[BestOfN]
  policy_replay: Optional[ColumnResult] = None  # noise floor: same schedule, other layout
  fixed_replay: Optional[ColumnResult] = None
  fixed_step: Optional[ColumnResult] = None  # Fixed matched per step of the episode
  shuffled: Optional[ColumnResult] = None  # the policy's actions, permuted across blocks

  @property
  def realized(self) -> tuple[float, float, float]:
    p = self.policy
    return (p.avg_keep_effective, p.avg_prune_keep, p.avg_quant_ratio)

  def baselines(self) -> dict[str, Optional[ColumnResult]]:
    """Each baseline's result at this point, in `comparison_log.METHODS` order (no dense)."""
    return {
      "fixed": self.fixed,
      "fixed_step": self.fixed_step,
      "shuffled": self.shuffled,
      "random_best": self.random[self.best.selected] if self.best else None,
      "random_oracle": self.random[self.best.oracle] if self.best else None,
      "emc": self.emc,
      "dac": self.dac,
    }


@dataclasses.dataclass
class Front:
  points: list[FrontPoint]
  dense: ColumnResult
  timings: list[dict]  # per harness call: seconds, decode row-steps, prefill tokens


def evaluate_front(
  params,
  cfg,
  space,
  settings,
  report_blocks: np.ndarray,
  select_blocks: np.ndarray,
  requested: Sequence[Sequence[float]],
  *,
  policy_provider,
  policy_inputs: Callable[[int, int], object],
  trials: int,
  seed: int,
  context_len: int,
  horizon: int,
  batch_size: int,
  noise_batch_size: int = 0,
  rows_per_call: int = 1024,
  methods: Sequence[str] = METHODS,
  progress: bool = True,
) -> Front:
  """The policy and every baseline at each requested point; see the module docstring.

  policy_inputs(batch_index, rows) -> the provider's inputs with one column per
  `requested` triple (in order).
  """
  unknown = set(methods) - set(METHODS)
  if unknown:
    raise ValueError(f"unknown front methods {sorted(unknown)}; choose from {METHODS}")
  timings = []
  kw = dict(context_len=context_len, horizon=horizon, progress=progress)

  def timed(desc, blocks, n_columns, fn):
    start = time.perf_counter()
    out = fn()
    timings.append(
      {
        "call": desc,
        "seconds": time.perf_counter() - start,
        "decode_row_steps": len(blocks) * n_columns * horizon,
        "prefill_tokens": len(blocks) * context_len,
      }
    )
    return out

  def plan(blocks, columns, desc, bs=batch_size):
    return timed(
      desc,
      blocks,
      len(columns),
      lambda: evaluate_plan(
        params, cfg, space, settings, blocks, columns, batch_size=bs, desc=desc, **kw
      ),
    )

  names = [f"policy {tuple(round(x, 4) for x in t)}" for t in requested]
  policy = timed(
    "policy",
    report_blocks,
    len(names),
    lambda: evaluate_columns(
      params,
      cfg,
      space,
      settings,
      report_blocks,
      batch_size=batch_size,
      names=names,
      batch_inputs=policy_inputs,
      provider=policy_provider,
      desc="policy",
      **kw,
    ),
  )
  # Every point's baselines share ONE harness call (one dense prefill per block
  # for all of them), and every point's random trials one call on the selection
  # blocks; blocks per call are sized so a call decodes about `rows_per_call` rows.
  columns, select_columns = [], []
  eff = effective_steps(context_len, horizon, settings)
  for i, pol in enumerate(policy):
    real = (pol.avg_keep_effective, pol.avg_prune_keep, pol.avg_quant_ratio)
    if "fixed" in methods:
      columns += fixed_columns(space, [real], [f"fixed p{i}"])
    if "fixed_step" in methods:
      profile = per_step_realized(pol.block_actions, space, eff)
      columns += step_fixed_columns(space, [profile], [f"fixed_step p{i}"])
    if "shuffled" in methods:
      columns += shuffled_columns([pol], space, seed + i, [f"shuffled p{i}"])
    if "random" in methods:
      rand = random_columns(space, real, trials, seed, prefix=f"random p{i}")
      columns += rand
      select_columns += rand
    for kind in ("emc", "dac"):
      if kind in methods:
        (col,) = heuristic_columns(kind, [real], space)
        columns.append(dataclasses.replace(col, name=f"{kind} p{i}"))
  columns += constant_columns(space, [space.dense_index])
  res = plan(report_blocks, columns, "baselines", _blocks_per_call(rows_per_call, len(columns)))
  res = {r.name: r for r in res}
  sel = {}
  if select_columns:
    sel = plan(
      select_blocks,
      select_columns,
      "random trials, selection split",
      _blocks_per_call(rows_per_call, len(select_columns)),
    )
    sel = {r.name: r for r in sel}
  points = []
  for i, (req, pol) in enumerate(zip(requested, policy)):
    trial_names = [f"random p{i} trial {j}" for j in range(trials)] if sel else []
    report = [res[n] for n in trial_names]
    chosen = [sel[n] for n in trial_names]
    points.append(
      FrontPoint(
        requested=tuple(float(x) for x in req),
        policy=pol,
        fixed=res.get(f"fixed p{i}"),
        fixed_step=res.get(f"fixed_step p{i}"),
        shuffled=res.get(f"shuffled p{i}"),
        emc=res.get(f"emc p{i}"),
        dac=res.get(f"dac p{i}"),
        random=report,
        random_select=chosen,
        best=best_of_n(chosen, report) if report else None,
      )
    )
  dense = res[space.tags[space.dense_index]]
  if noise_batch_size:
    originals = [p.policy for p in points] + [p.fixed for p in points if p.fixed is not None]
    replayed = plan(
      report_blocks,
      replay_columns(originals, space)[::-1],
      "noise floor: replay",
      bs=noise_batch_size,
    )[::-1]
    fixed_replays = iter(replayed[len(points) :])
    for j, p in enumerate(points):
      p.policy_replay = replayed[j]
      p.fixed_replay = next(fixed_replays) if p.fixed is not None else None
  return Front(points, dense, timings)


def _blocks_per_call(rows: int, columns: int) -> int:
  return max(1, rows // columns)


def _row(point, method, result: ColumnResult, p: FrontPoint, **extra) -> dict:
  return dict(
    point=point,
    method=method,
    requested_kappa=p.requested[0],
    requested_rho=p.requested[1],
    requested_eta=p.requested[2],
    ppl=result.ppl,
    kappa=result.avg_keep_effective,
    rho=result.avg_prune_keep,
    eta=result.avg_quant_ratio,
    net_keep=result.net_keep,
    relative_flops=result.relative_flops,
    tokens=result.tokens,
    **extra,
  )


def front_rows(front: Front, *, resamples: int = 10_000, seed: int = 0) -> list[dict]:
  """One row per (point, method): PPL, realized budgets, and policy vs that method.

  `vs_*` columns: 100·(PPL_policy / PPL_method − 1) with its 95 % paired-bootstrap
  interval over blocks; `gap*`: (PPL_method − PPL_policy) / (PPL_method − PPL_dense).
  On the policy row, `noise_pct` is the replayed-schedule change of the policy
  and `fixed_noise_pct` of Fixed: the evaluation's own noise at that point.
  """
  rows = []
  dense = front.dense
  for i, p in enumerate(front.points):
    pol = p.policy
    methods = {**p.baselines(), "dense": dense}
    extra = {}
    if p.policy_replay is not None:
      extra["noise_pct"] = 100.0 * (p.policy_replay.ppl / pol.ppl - 1.0)
    if p.fixed_replay is not None:
      extra["fixed_noise_pct"] = 100.0 * (p.fixed_replay.ppl / p.fixed.ppl - 1.0)
    rows.append(_row(i, "policy", pol, p, **extra))
    for method, res in methods.items():
      if res is None:
        continue
      d = paired_bootstrap(
        pol.block_nll_sum,
        res.block_nll_sum,
        pol.block_tokens,
        nll_dense=None if method == "dense" else dense.block_nll_sum,
        resamples=resamples,
        seed=seed,
      )
      extra = dict(vs=d.diff_pct, vs_lo=d.diff_pct_lo, vs_hi=d.diff_pct_hi)
      if method != "dense":
        extra.update(gap=d.gap, gap_lo=d.gap_lo, gap_hi=d.gap_hi)
      if method == "random_best":
        extra.update(
          random_mean_ppl=p.best.mean_ppl, trials=p.best.trials, selected=p.best.selected
        )
      rows.append(_row(i, method, res, p, **extra))
  return rows


def adherence(front: Front, space) -> dict:
  """Per axis: requested, realized, and mean / max |realized − requested| over the points.

  Requests the grid cannot reach are clamped to the grid before the miss is taken.
  """
  lo, hi = (np.asarray(b) for b in diagonal_path(space))
  req = np.clip(np.asarray([p.requested for p in front.points], np.float64), lo, hi)
  got = np.asarray([p.realized for p in front.points], np.float64)
  out = {}
  for a, name in enumerate(("kappa", "rho", "eta")):
    miss = np.abs(got[:, a] - req[:, a])
    out[name] = {
      "requested": req[:, a].tolist(),
      "realized": got[:, a].tolist(),
      "mean_miss": float(miss.mean()),
      "max_miss": float(miss.max()),
    }
  return out


def pool_seeds(blocks: Sequence[dict], *, resamples: int = 10_000, seed: int = 0) -> list[dict]:
  """Policy vs each method pooled over seeds: one paired bootstrap over the shared blocks.

  `blocks`: per seed, the arrays `experiments.front` saves (`front_blocks.npz`:
  "tokens", "dense", "<point>/<method>" per-block NLL sums), all on the same
  report blocks and points. A block's pooled NLL is the sum over seeds (each
  seed's baselines matched to that seed's realized budgets), so every resample
  draws a block for all seeds at once.
  """
  if len(blocks) < 2:
    raise ValueError(f"pooling needs the fronts of at least two seeds, got {len(blocks)}")
  tokens = [np.asarray(b["tokens"]) for b in blocks]
  if any(t.shape != tokens[0].shape or not np.array_equal(t, tokens[0]) for t in tokens):
    raise ValueError("the fronts to pool were not evaluated on the same report blocks")
  keys = set.intersection(*(set(b) for b in blocks))
  points = sorted({int(k.split("/")[0]) for k in keys if "/" in k})
  total = lambda key: sum(np.asarray(b[key], np.float64) for b in blocks)
  tok, dense = len(blocks) * tokens[0].astype(np.float64), total("dense")
  rows = []
  for i in points:
    pol = total(f"{i}/policy")
    for method in comparison_log.METHODS[1:]:
      key = "dense" if method == "dense" else f"{i}/{method}"
      if key not in keys:
        continue
      other = total(key)
      d = paired_bootstrap(
        pol,
        other,
        tok,
        nll_dense=None if method == "dense" else dense,
        resamples=resamples,
        seed=seed,
      )
      rows.append(
        dict(
          point=i,
          method=method,
          seeds=len(blocks),
          policy_ppl=float(np.exp(pol.sum() / tok.sum())),
          ppl=float(np.exp(other.sum() / tok.sum())),
          vs=d.diff_pct,
          vs_lo=d.diff_pct_lo,
          vs_hi=d.diff_pct_hi,
          gap=d.gap,
          gap_lo=d.gap_lo,
          gap_hi=d.gap_hi,
        )
      )
  return rows
