"""Which tokens get the compute: per-token allocation against token difficulty (issue 10).

A token's difficulty is its dense NLL (the loss of predicting it with the full
model); its compute is the net keep (κ + ρ/ρ_max + η)/3 of the action executed
at its step. `allocation_bins` splits one text source's tokens into quantile
bins of difficulty and reports, per bin, what the policy and Fixed (matched to
the policy's realized budgets) spend and what each loses against dense there.
A policy that helps spends more where compression hurts; comparing bins across
text sources shows which tokens it treats differently out of domain.

Dense NLL is only a proxy for where compression hurts (Fixed's damage per
difficulty bin is roughly flat on SmolLM2), so a second correlation uses Fixed's
own per-token damage (Fixed NLL − dense NLL) as the token's *sensitivity*: a
policy that allocates well spends more on sensitive tokens (positive Spearman).
It is noisy per token (low-bit fake-quant flips), which biases it toward 0.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from sol_jax.efficiency import budget
from sol_jax.efficiency.actions import ActionSpace


def action_net_keep(space: ActionSpace) -> np.ndarray:
  """[A] net keep (κ + ρ/ρ_max + η)/3 of every action of the grid."""
  return np.asarray(budget.net_keep(*budget.step_usage(np.arange(space.num_actions), space)))


def allocation_bins(
  dense_nll: np.ndarray,
  policy_nll: np.ndarray,
  fixed_nll: np.ndarray,
  policy_keep: np.ndarray,
  fixed_keep: np.ndarray,
  bins: int,
) -> tuple[list[dict], dict[str, float]]:
  """Per difficulty bin: mean dense NLL, compute and NLL excess of policy and Fixed.

  All arrays are per token, any equal shape (e.g. [blocks, T]). Bins are
  quantiles of dense NLL (bin 0: easiest). Returns (rows, Spearman correlations
  of the policy's per-token compute with the token's dense NLL ("difficulty")
  and with Fixed's NLL excess over dense there ("sensitivity")).
  """
  arrays = [np.asarray(a, np.float64).reshape(-1) for a in (dense_nll, policy_nll, fixed_nll)]
  dense, pol, fix = arrays
  pk, fk = (np.asarray(a, np.float64).reshape(-1) for a in (policy_keep, fixed_keep))
  if not all(a.shape == dense.shape for a in (pol, fix, pk, fk)):
    raise ValueError("allocation_bins needs per-token arrays of one shape")
  if bins < 1 or bins > dense.size:
    raise ValueError(f"bins={bins} must be in [1, {dense.size}] (the number of tokens)")
  # Rank-based bins: equal token counts even where many NLLs tie.
  rank = np.argsort(np.argsort(dense, kind="stable"), kind="stable")
  which = rank * bins // dense.size
  rows = []
  for b in range(bins):
    sel = which == b
    rows.append(
      dict(
        bin=b,
        tokens=int(sel.sum()),
        dense_nll=float(dense[sel].mean()),
        policy_keep=float(pk[sel].mean()),
        fixed_keep=float(fk[sel].mean()),
        policy_excess=float((pol - dense)[sel].mean()),
        fixed_excess=float((fix - dense)[sel].mean()),
        policy_minus_fixed=float((pol - fix)[sel].mean()),
      )
    )
  corr = lambda other: (
    float(spearmanr(pk, other).statistic) if pk.std() > 0 and other.std() > 0 else float("nan")
  )
  return rows, {"difficulty": corr(dense), "sensitivity": corr(fix - dense)}


def position_profile(
  dense_nll: np.ndarray,
  policy_nll: np.ndarray,
  fixed_nll: np.ndarray,
  policy_keep: np.ndarray,
  fixed_keep: np.ndarray,
) -> list[dict]:
  """Per step t of the episode (arrays [blocks, T]): compute and NLL excess of both methods.

  Fixed spends the same at every step by construction; a policy may not. A compressed
  step's KV entries are read by every later step of the episode, so compressing late
  steps is cheaper than compressing early ones regardless of the token: a policy that
  front-loads its compute can beat Fixed without looking at the text at all.
  """
  arrays = [np.asarray(a, np.float64) for a in (dense_nll, policy_nll, fixed_nll)]
  dense, pol, fix = arrays
  pk, fk = (np.asarray(a, np.float64) for a in (policy_keep, fixed_keep))
  if dense.ndim != 2 or not all(a.shape == dense.shape for a in (pol, fix, pk, fk)):
    raise ValueError("position_profile needs [blocks, T] arrays of one shape")
  return [
    dict(
      step=t,
      policy_keep=float(pk[:, t].mean()),
      fixed_keep=float(fk[:, t].mean()),
      policy_excess=float((pol - dense)[:, t].mean()),
      fixed_excess=float((fix - dense)[:, t].mean()),
    )
    for t in range(dense.shape[1])
  ]
