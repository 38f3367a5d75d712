"""KV-pollution impulse test (method §12.8): columns, metrics and the script on the tiny Llama."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import pollution as script
from sol_jax.evaluation import pollution as pol
from sol_jax.evaluation.harness import StaticSchedule, run_controlled
from sol_jax.policy import PolicyAgent, network
from tests.evaluation.test_generate import SPACE, ST
from tests.evaluation.tiny_scripts import patch_tiny
from tests.tiny_models import TINY_LLAMA as CFG


def test_single_axis_actions_change_one_axis_each():
  acts = pol.single_axis_actions(SPACE)
  dense = SPACE.levels_of(SPACE.dense_index)
  assert len(acts) == sum(
    len(set(v)) - 1 for v in (SPACE.keep_fracs, SPACE.prune_fracs, SPACE.quant_bits)
  )
  for name, a in acts.items():
    changed = [i for i, (x, y) in enumerate(zip(SPACE.levels_of(a), dense)) if x != y]
    assert len(changed) == 1 and name.split("=")[0] == pol.AXIS_NAMES[changed[0]], name


def test_metrics_by_hand():
  delta = np.zeros((10, 6))  # c = 2 impulse steps, tau = 4
  delta[:, :2] = np.log(1.1)  # +10 % during the impulse
  delta[0, 2:] = np.log(1.5)  # one window keeps +50 % through the tail
  m = pol.impulse_metrics(delta, 2)
  assert m.direct == pytest.approx(10.0)
  assert m.tail == pytest.approx(5.0)  # (50 + 9 * 0) / 10
  assert m.tail_worst10 == pytest.approx(50.0)  # the worst tenth is that window
  assert m.peak_p95 == pytest.approx(np.percentile([50.0] + [0.0] * 9, 95))
  np.testing.assert_allclose(m.curve_median, 0.0)
  np.testing.assert_allclose(m.curve_p90, np.percentile([np.log(1.5)] + [0] * 9, 90))


def test_impulse_schedule_and_windows():
  first = np.arange(2 * 3 * 2).reshape(2, 3, 2)
  s = pol.impulse_schedule(first, 5, dense=99)
  assert (s[:, 0] == 99).all() and (s[:, 1:, 2:] == 99).all()
  np.testing.assert_array_equal(s[:, 1:, :2], first[:, 1:])
  w = pol.random_windows(np.arange(100), 10, 5, seed=0)
  assert w.shape == (5, 10) and all((np.diff(r) == 1).all() for r in w)
  with pytest.raises(ValueError, match="fewer than one window"):
    pol.random_windows(np.arange(5), 10, 1, seed=0)


@pytest.mark.integration
def test_impulse_columns_on_the_tiny_model(tiny_llama):
  _, params = tiny_llama
  p, c, tau = 12, 2, 6
  blocks = jax.random.randint(jax.random.PRNGKey(1), (2, p + c + tau + 1), 0, CFG.vocab_size)
  dense, hard = SPACE.dense_index, SPACE.index_from_levels(0, 0, 0)
  first = np.stack([np.full((2, c), a) for a in (dense, dense, hard)], axis=1)
  ep = run_controlled(
    params,
    blocks,
    jnp.asarray(pol.impulse_schedule(first, c + tau, dense)),
    cfg=CFG,
    space=SPACE,
    settings=ST,
    provider=StaticSchedule(),
    context_len=p,
    horizon=c + tau,
    schedules=3,
  )
  nll = np.asarray(ep.nll, np.float64)
  np.testing.assert_array_equal(nll[:, 1], nll[:, 0])  # a dense "impulse" changes nothing
  assert np.abs(nll[:, 2, :c] - nll[:, 0, :c]).max() > 1e-3  # the hard one does
  assert np.abs(nll[:, 2, c:] - nll[:, 0, c:]).max() > 0  # ... and its KV reaches the tail

  cfg_policy = network.PolicyConfig(
    obs_hidden_dim=CFG.hidden_size,
    embed_dim=CFG.hidden_size,
    num_actions=SPACE.num_actions,
    d_model=16,
    num_heads=2,
  )
  agent = pol.ImpulseOf(PolicyAgent(cfg_policy, SPACE, 4), c, dense)
  inputs = {
    "params": network.init_params(cfg_policy, jax.random.PRNGKey(0)),
    "targets": jnp.full((2, 2, 3), 0.3),
    "rng": jax.random.PRNGKey(0),
  }
  ep = run_controlled(
    params,
    blocks,
    inputs,
    cfg=CFG,
    space=SPACE,
    settings=ST,
    provider=agent,
    context_len=p,
    horizon=c + tau,
    schedules=2,
  )
  acts = np.asarray(ep.actions)
  assert (acts[:, 0] == dense).all() and (acts[:, 1, c:] == dense).all()


@pytest.mark.integration
def test_script_prints_and_writes(monkeypatch, tiny_llama, tmp_path, capsys):
  patch_tiny(monkeypatch, script, tiny_llama)
  tokens = lambda name, tok, n, data_dir=None: np.asarray(tok.encode(open(name).read()))[:, None]
  monkeypatch.setattr(script, "text_blocks", tokens)  # no token cache for the char tokenizer
  text = tmp_path / "text.txt"
  text.write_text("the cat sat on the mat and the dog sat on the log. " * 20)
  out = tmp_path / "out"
  script.main(
    [
      "policy.d_model=16",
      "policy.num_heads=2",
      "data.horizon=4",
      "eval.dtype=float32",
      f"data.eval={text}",
      "pollution.prefix_len=16",
      "pollution.impulse_steps=2",
      "pollution.tail_steps=4",
      "pollution.windows=4",
      "pollution.batch_size=2",
      "pollution.bootstrap_resamples=100",
      "eval.knob=[0.2]",
      "eval.progress=false",
      f"train.run_dir={tmp_path / 'no_run'}",
      f"--out={out}",
    ]
  )
  printed = capsys.readouterr().out
  assert "policy - fixed, tail mean dNLL" in printed and "paired over 4 windows" in printed
  data = json.loads((out / "pollution.json").read_text())
  names = [r["column"] for r in data["rows"]]
  assert names[-2:] == ["fixed", "policy"] and any(n.startswith("bits=") for n in names)
  assert np.asarray(data["delta_nll"]["policy"]).shape == (4, 6)
  assert (out / "pollution.png").stat().st_size > 0 and (out / "pollution.csv").exists()
