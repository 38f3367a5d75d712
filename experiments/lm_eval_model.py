"""sol_jax as an lm-evaluation-harness model, with the policy in the loop (issue 11 item 3).

  sol-lm-eval [CONFIG] [key=value ...] [lm-eval flags]
  e.g.  sol-lm-eval lmeval.mode=policy eval.policy=smollm2_3L_cpu/seed1 eval.knob=[0.5] \\
            --tasks arc_easy --limit 100
        sol-lm-eval --model sol_jax --model_args mode=fixed,targets=0.6/0.8/8 --tasks piqa
  (= python -m experiments.lm_eval_model ...; needs `pip install .[lmeval]`)

lm-eval 0.4.13 only finds a model registered in its own process (it has no plugin
entry points), so `sol-lm-eval` is lm-eval's command line with `sol_jax` registered
(and `--model sol_jax` by default): every lm-eval flag works. The leading CONFIG and
key=value words are the sol_jax config, as for every script; they are checked before
lm-eval starts. From Python, `import experiments.lm_eval_model` and then
`lm_eval.simple_evaluate(model="sol_jax", model_args="...")`.

model_args (comma-separated key=value) are config keys: `section.field=value`
overrides (e.g. `data.horizon=16`, `model.source=...`, `eval.dtype=bfloat16`), plus
the shortcuts config=NAME|PATH (the experiment config; default smollm2_3L_cpu),
mode= (lmeval.mode: dense | policy | fixed | constant), policy= (eval.policy),
knob= (eval.knob=[v]), targets=k/r/e (eval.budgets=[[k,r,e]], e in (0, 1] or bits)
and max_length= (lmeval.max_length). With mode=policy the policy's saved config is
the base, as in every evaluation script.

Requests, every one teacher-forced or generated under the mode's control, with the
dense-replay refresh every T = data.horizon tokens (method §12.6) for every mode:
- loglikelihood: as our multiple-choice scorer (`evaluation.multiple_choice`):
  the context is prefilled densely, every continuation token is controlled;
  requests sharing a context share its prefix. is_greedy: every token was the argmax.
- loglikelihood_rolling: lm-eval's disjoint rolling windows of max_length tokens
  (the first conditioned on the EOS token), each window scored as a continuation.
- generate_until: `evaluation.generate` with the `until` strings, max_gen_toks,
  do_sample / temperature / top_p / top_k.
Fixed is one allocator for the whole run, so its pooled averages track the targets
over every controlled token. To compare with Fixed at the policy's *realized* budgets,
run mode=policy first and pass the realized budgets it logs as targets= to mode=fixed.
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

import numpy as np
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from experiments import DEFAULT_CONFIG, cli
from experiments.generate import nearest_action
from sol_jax import config as config_lib
from sol_jax.evaluation import generate as gen
from sol_jax.evaluation import mc_report
from sol_jax.evaluation import multiple_choice as mc
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.harness import StaticSchedule
from sol_jax.evaluation.knob import requested_targets
from sol_jax.models import load_model, load_tokenizer
from sol_jax.policy import PolicyAgent
from sol_jax.rl import make_setup, trained_policy
from sol_jax.rl.policy_compat import evaluation_config

log = logging.getLogger(__name__)

SHORTCUTS = {
  "mode": "lmeval.mode",
  "policy": "eval.policy",
  "max_length": "lmeval.max_length",
}
IGNORED = ("device", "max_batch_size")  # lm-eval passes these to every model


def overrides_from_model_args(args: dict) -> tuple[Optional[str], list[str]]:
  """(config name or None, `key=value` overrides) from lm-eval's parsed model_args."""
  config, out = None, []
  for key, value in args.items():
    text = str(value)
    if key == "config":
      config = text
    elif key in IGNORED:
      continue
    elif key == "batch_size":
      if text != "auto":  # lm-eval's default is the string "auto" or an int
        out.append(f"lmeval.batch_size={int(float(text))}")
    elif key in SHORTCUTS:
      out.append(f"{SHORTCUTS[key]}={text}")
    elif key == "knob":
      out.append(f"eval.knob=[{text}]")
    elif key == "targets":
      out.append(f"eval.budgets=[[{text.replace('/', ',')}]]")
    elif "." in key:
      out.append(f"{key}={text}")
    else:
      raise ValueError(
        f"unknown sol_jax model_arg {key!r}: use config, mode, policy, knob, targets, "
        f"max_length, batch_size or a config key section.field=value"
      )
  return config, out


KEYS = (
  "lmeval",
  *cli.POLICY_TARGET_KEYS,
  "eval.greedy",
  "eval.random_seed",
  "eval.dtype",
  "eval.progress",
  "model.source",
  "data.horizon",
)
LM_EVAL_COMMANDS = ("run", "ls", "validate")
_command_line: list[str] = []  # sol-lm-eval's leading CONFIG / key=value words


def load_config(args: dict, command_line=()) -> config_lib.ExperimentConfig:
  """The config: command-line words, then model_args on top; with mode=policy the
  policy's (or run's) saved config is the base, as in every evaluation script."""
  lead = list(command_line)
  base = lead.pop(0) if lead and "=" not in lead[0] else DEFAULT_CONFIG
  name, overrides = overrides_from_model_args(args)
  argv = [name or base, *lead, *overrides]
  cfg = config_lib.config_from_argv(argv)
  return evaluation_config(argv) if cfg.lmeval.mode == "policy" else cfg


@register_model("sol_jax")
class SolJaxLM(LM):
  """lm-eval `LM` over a sol_jax model; see the module docstring for model_args."""

  def __init__(self, **model_args):
    super().__init__()
    self.cfg = load_config(model_args, _command_line)
    self.model_cfg, self.params = load_model(self.cfg.model.source, dtype=self.cfg.eval.dtype)
    self.tokenizer = load_tokenizer(self.cfg.model.source)
    self.setup = make_setup(self.cfg, self.model_cfg)
    self.space, self.horizon = self.setup.space, self.cfg.data.horizon
    self.mode = self.cfg.lmeval.mode
    self.targets = None
    if self.mode != "dense":
      targets = requested_targets(self.cfg.eval, self.space)
      if len(targets) != 1:
        raise ValueError(
          f"mode={self.mode} needs one target, got {len(targets)}: pass knob=K or targets=k/r/e"
        )
      self.targets = targets[0]
    self.policy_params = None
    if self.mode == "policy":
      self.policy_params, step, _ = trained_policy(self.cfg, self.model_cfg)
      log.info("sol_jax: policy %s, step %s", self.cfg.eval.policy or self.cfg.train.run_dir, step)
    if self.mode == "fixed":
      self.allocator = FixedAllocator(self.space, self.targets)
    self.scored: list[mc.ItemScores] = []  # everything controlled so far: realized budgets
    self._calls = 0

  # ---- providers --------------------------------------------------------------------

  def _provider(self):
    if self.mode == "dense":
      return None
    if self.mode == "constant":
      return gen.ConstantProvider(nearest_action(self.space, self.targets))
    if self.mode == "fixed":
      return StaticSchedule()
    return PolicyAgent(self.setup.policy, self.space, self.horizon, greedy=self.cfg.eval.greedy)

  def _score_inputs(self):
    seed = self.cfg.eval.random_seed + self._calls  # a fresh key per lm-eval call
    self._calls += 1
    if self.mode == "fixed":
      return mc.fixed_inputs(self.allocator)
    if self.mode == "policy":
      return mc.policy_inputs(self.policy_params, self.targets, seed=seed)
    return None

  def _generate_inputs(self):
    seed = self.cfg.eval.random_seed + self._calls
    self._calls += 1
    if self.mode == "fixed":
      return gen.schedule_inputs(lambda: self.allocator, self.horizon)
    if self.mode == "policy":
      return gen.policy_inputs(self.policy_params, self.targets, seed=seed)
    return None

  def realized_budgets(self) -> dict[str, float]:
    """Pooled realized budgets of every token scored or generated so far (method §7)."""
    return mc_report.realized_budgets(self.scored, self.space)

  def _log_budgets(self):
    if self.mode != "dense" and self.scored:
      b = self.realized_budgets()
      log.info(
        "sol_jax %s realized so far: kappa %.3f rho %.3f eta %.3f (net keep %.3f) "
        "over %d effective steps",
        self.mode,
        b["avg_keep_effective"],
        b["avg_prune_keep"],
        b["avg_quant_ratio"],
        b["net_keep"],
        b["effective_steps"],
      )

  # ---- scoring ----------------------------------------------------------------------

  @property
  def prefix_token_id(self) -> int:
    eos = getattr(self.tokenizer, "eos_token_id", None)
    return eos if eos is not None else self.tokenizer.bos_token_id

  def _score(self, requests: list[mc.Request], desc: str) -> list[mc.ItemScores]:
    scores = mc.score_requests(
      self.params,
      self.model_cfg,
      requests,
      space=self.space,
      settings=self.setup.settings,
      horizon=self.horizon,
      provider=self._provider(),
      inputs=self._score_inputs(),
      batch_size=self.cfg.lmeval.batch_size,
      progress=self.cfg.eval.progress,
      desc=desc,
    )
    self.scored.extend(scores)
    self._log_budgets()
    return scores

  def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
    if context == "":  # lm-eval conditions a context-free continuation on the EOS token
      return [self.prefix_token_id], gen.encode(self.tokenizer, continuation)
    return mc.encode_pair(self.tokenizer, context, continuation)

  def loglikelihood(self, requests) -> list[tuple[float, bool]]:
    pairs = [self._encode_pair(*r.args) for r in requests]
    for (ctx, cont), r in zip(pairs, requests):
      if not cont:
        raise ValueError(f"continuation {r.args[1]!r} has no tokens")
    # Requests with the same context become one item (its choices share the prefix).
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, _) in enumerate(pairs):
      groups.setdefault(tuple(ctx), []).append(i)
    keys = list(groups)
    items = [
      mc.Request(
        np.asarray(k, np.int32),
        tuple(np.asarray(pairs[i][1], np.int32) for i in groups[k]),
      )
      for k in keys
    ]
    scores = self._score(items, f"loglikelihood ({self.mode})")
    out: list[Optional[tuple[float, bool]]] = [None] * len(requests)
    for k, s in zip(keys, scores):
      for j, i in enumerate(groups[k]):
        out[i] = (float(s.loglik[j]), bool(np.all(s.greedy[j])))
    self._cache("loglikelihood", requests, out)
    return out

  def loglikelihood_rolling(self, requests) -> list[float]:
    items, owner = [], []
    for index, r in enumerate(requests):
      tokens = gen.encode(self.tokenizer, r.args[0])
      windows = get_rolling_token_windows(
        tokens, self.prefix_token_id, self.cfg.lmeval.max_length, context_len=1
      )
      for ctx, cont in map(make_disjoint_window, windows):
        items.append(mc.Request(np.asarray(ctx, np.int32), (np.asarray(cont, np.int32),)))
        owner.append(index)
    scores = self._score(items, f"loglikelihood_rolling ({self.mode})") if items else []
    out = [0.0] * len(requests)
    for index, s in zip(owner, scores):
      out[index] += float(s.loglik[0])
    self._cache("loglikelihood_rolling", requests, out)
    return out

  def generate_until(self, requests) -> list[str]:
    out = []
    for r in requests:
      context, kwargs = r.args
      kwargs = dict(kwargs or {})
      until = kwargs.pop("until", None)
      until = [until] if isinstance(until, str) else list(until or [])
      max_new = int(kwargs.pop("max_gen_toks", 256))
      temperature = float(kwargs.pop("temperature", 0.0) or 0.0)
      sample = bool(kwargs.pop("do_sample", False)) and temperature > 0
      sampling = gen.Sampling(
        temperature=temperature if sample else 0.0,
        top_p=float(kwargs.pop("top_p", 1.0) or 1.0),
        top_k=int(kwargs.pop("top_k", 0) or 0),
      )
      if kwargs:
        log.warning("sol_jax ignores generation arguments %s", sorted(kwargs))
      prompt = self._fit_prompt(context, max_new)
      (generation,) = gen.generate(
        self.params,
        self.model_cfg,
        self.tokenizer,
        prompt,
        space=self.space,
        settings=self.setup.settings,
        horizon=self.horizon,
        max_new_tokens=max_new,
        provider=self._provider(),
        inputs=self._generate_inputs(),
        sampling=sampling,
        stop=until,
        seed=self.cfg.eval.random_seed + len(out),
      )
      cont = generation.samples[0]
      self.scored.append(
        mc.ItemScores(np.zeros(1), [cont.logprobs], [cont.actions], [cont.effective])
      )
      out.append(cont.text)
    self._log_budgets()
    self._cache("generate_until", requests, out)
    return out

  def _fit_prompt(self, context: str, max_new: int) -> str:
    """The prompt, cut on the left so prompt + continuation fit lmeval.max_length."""
    ids = gen.encode(self.tokenizer, context)
    keep = self.cfg.lmeval.max_length - max_new
    if keep < 1:
      raise ValueError(
        f"max_gen_toks={max_new} leaves no room for the prompt in "
        f"lmeval.max_length={self.cfg.lmeval.max_length}"
      )
    return context if len(ids) <= keep else self.tokenizer.decode(ids[-keep:])

  def _cache(self, kind: str, requests, results) -> None:
    for r, res in zip(requests, results):
      self.cache_hook.add_partial(kind, r.args, res)


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
  """(leading sol_jax config words, lm-eval's arguments)."""
  n = 0
  while n < len(argv) and not argv[n].startswith("-") and argv[n] not in LM_EVAL_COMMANDS:
    n += 1
  return argv[:n], argv[n:]


def _flag(args: list[str], name: str) -> Optional[str]:
  for i, a in enumerate(args):
    if a == name and i + 1 < len(args):
      return args[i + 1]
    if a.startswith(name + "="):
      return a.split("=", 1)[1]
  return None


@cli.main_entry
def main(argv=None):
  """lm-eval's command line with the `sol_jax` model registered (a user error in the
  sol_jax config prints one `error:` line, as in every script)."""
  from lm_eval.__main__ import cli_evaluate  # pylint: disable=g-import-not-at-top
  from lm_eval.utils import simple_parse_args_string  # pylint: disable=g-import-not-at-top

  lead, rest = _split(list(argv))
  model = _flag(rest, "--model") or "sol_jax"
  if model == "sol_jax":  # fail on a bad config here, not after lm-eval loaded the tasks
    load_config(simple_parse_args_string(_flag(rest, "--model_args") or ""), lead)
  if not rest or rest in (["-h"], ["--help"]):
    cli.parse([*lead, "--help"], __doc__, KEYS)  # ours; lm-eval's: `sol-lm-eval run --help`
  if _flag(rest, "--model") is None and rest[0] not in LM_EVAL_COMMANDS[1:]:
    rest = ["--model", "sol_jax", *rest]
  _command_line[:] = lead
  sys.argv = [sys.argv[0], *rest]
  cli_evaluate()


if __name__ == "__main__":
  main()
