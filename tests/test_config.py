"""Tests for sol_jax.config: YAML loading, overrides, validation, official variants."""

import dataclasses
import pathlib
import typing

import pytest
import yaml

from sol_jax import config as C
from sol_jax.config import loading as config_loading

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "sol_jax" / "configs"
ALL_YAMLS = sorted(CONFIG_DIR.glob("*.yaml"))

FL_KEEP = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
FL_PRUNE = [
  "s40",
  "s45",
  "s50",
  "s55",
  "s60",
  "s65",
  "s70",
  "s75",
  "s80",
  "s85",
  "s90",
  "s95",
  "s100",
]
FL_QUANT = ["q5", "q6", "q7", "q8", "q9", "q10", "q11", "q12", "q13", "q14", "q15", "q16"]
R_KEEP = [0.1, 0.4, 0.7, 1.0]
R_PRUNE = ["s45", "s50", "s60", "s70", "s80", "s90", "s100"]
L1B, L3B = "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B"
L8BI = "meta-llama/Llama-3.1-8B-Instruct"
DISTIL = "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"

# docs/method.md §11.2, typed in by hand from the table:
# model, criterion, page (None: unused), keep, prune, quant, A, C, T, K, B, accum,
# Ts, Tw, budgets per axis (range (lo, hi) or set {v}), alphas.
SPEC_11_2 = {
  "All_Variantsv2": (
    L1B,
    "quest",
    4,
    [0.1, 1.0],
    ["s60", "s100"],
    ["q5", "q16"],
    8,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [(0.1, 1), (0.6, 1), (0.3125, 1)],
    (100, 100, 200),
  ),
  "All_Variantsv3": (
    L1B,
    "quest",
    4,
    [0.1, 0.6, 1.0],
    ["s40", "s80", "s100"],
    ["q5", "q7", "q16"],
    27,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [(0.1, 1), (0.4, 1), (0.3125, 1)],
    (100, 100, 200),
  ),
  "All_VariantsvMax": (
    L1B,
    "quest",
    8,
    FL_KEEP,
    FL_PRUNE,
    FL_QUANT,
    1560,
    1024,
    16,
    32,
    8,
    8,
    4,
    2,
    [(0.1, 1), (0.4, 1), (0.3125, 1)],
    (100, 100, 200),
  ),
  "AV_V_R4": (
    L1B,
    "quest",
    8,
    R_KEEP,
    R_PRUNE,
    FL_QUANT,
    336,
    1024,
    4,
    32,
    8,
    8,
    4,
    2,
    [(0.1, 1), (0.45, 1), (0.3125, 1)],
    (100, 100, 200),
  ),
  "AV_V_R16": (
    L1B,
    "quest",
    8,
    R_KEEP,
    R_PRUNE,
    FL_QUANT,
    336,
    1024,
    16,
    32,
    8,
    8,
    4,
    2,
    [(0.1, 1), (0.45, 1), (0.3125, 1)],
    (100, 100, 200),
  ),
  "AV_V_R64": (
    L1B,
    "quest",
    8,
    R_KEEP,
    R_PRUNE,
    FL_QUANT,
    336,
    1024,
    64,
    32,
    8,
    8,
    4,
    2,
    [(0.1, 1), (0.45, 1), (0.3125, 1)],
    (100, 100, 200),
  ),
  "All_Variants_Llama3B": (
    L3B,
    "quest",
    8,
    FL_KEEP,
    FL_PRUNE,
    FL_QUANT,
    1560,
    512,
    16,
    16,
    4,
    16,
    4,
    2,
    [(0.1, 1), (0.4, 1), (0.3125, 1)],
    (100, 100, 200),
  ),
  "All_Variants_Llama8Bi": (
    L8BI,
    "quest",
    8,
    FL_KEEP,
    FL_PRUNE,
    FL_QUANT,
    1560,
    512,
    16,
    16,
    2,
    32,
    4,
    2,
    [(0.1, 1), (0.4, 1), (0.3125, 1)],
    (100, 100, 200),
  ),
  "ContextualDistil8B": (
    DISTIL,
    "quest",
    16,
    [0.05] + FL_KEEP,
    ["s100"],
    ["q16"],
    11,
    1024,
    64,
    16,
    2,
    32,
    16,
    16,
    [(0.1, 1), {1}, {1}],
    (100, 0, 0),
  ),
  "TokSparse_K10K100": (
    L1B,
    "quest",
    4,
    [0.1, 1],
    ["s100"],
    ["q16"],
    2,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [(0.1, 1), {1}, {1}],
    (100, 0, 0),
  ),
  "TokSparse_K20K100": (
    L1B,
    "quest",
    4,
    [0.2, 1],
    ["s100"],
    ["q16"],
    2,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [(0.2, 1), {1}, {1}],
    (100, 0, 0),
  ),
  "TokSparse_K40K100": (
    L1B,
    "quest",
    4,
    [0.4, 1],
    ["s100"],
    ["q16"],
    2,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [(0.4, 1), {1}, {1}],
    (100, 0, 0),
  ),
  "Prune_S30S100": (
    L1B,
    "recency",
    None,
    [1],
    ["s30", "s100"],
    ["q16"],
    2,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [{1}, (0.3, 1), {1}],
    (0, 100, 0),
  ),
  "Prune_S40S100": (
    L1B,
    "recency",
    None,
    [1],
    ["s40", "s100"],
    ["q16"],
    2,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [{1}, (0.4, 1), {1}],
    (0, 100, 0),
  ),
  "Prune_S50S100": (
    L1B,
    "recency",
    None,
    [1],
    ["s50", "s100"],
    ["q16"],
    2,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [{1}, (0.5, 1), {1}],
    (0, 100, 0),
  ),
  "Quant_Q5Q10": (
    L1B,
    "recency",
    None,
    [1],
    ["s100"],
    ["q5", "q10"],
    2,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [{1}, {1}, (0.3125, 0.625)],
    (0, 0, 200),
  ),
  "Quant_Q5Q16": (
    L1B,
    "recency",
    None,
    [1],
    ["s100"],
    ["q5", "q16"],
    2,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [{1}, {1}, (0.3125, 1)],
    (0, 0, 200),
  ),
  "Quant_Q6Q16": (
    L1B,
    "recency",
    None,
    [1],
    ["s100"],
    ["q6", "q16"],
    2,
    1024,
    16,
    16,
    8,
    8,
    4,
    2,
    [{1}, {1}, (0.375, 1)],
    (0, 0, 200),
  ),
}
# Method §5 action-variant files (owned by the actions module) per official config.
VARIANT_OF = {
  "All_Variantsv2": "2L",
  "All_Variantsv3": "3L",
  "All_VariantsvMax": "FL",
  "AV_V_R16": "FL336",
  "TokSparse_K10K100": "C-K10K100",
  "Prune_S30S100": "P-S30S100",
  "Quant_Q6Q16": "Q-Q6Q16",
}


def _write(path: pathlib.Path, data) -> pathlib.Path:
  path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
  return path


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: p.stem)
def test_every_yaml_loads_and_round_trips(path, tmp_path):
  cfg = C.load_config(path)
  assert hash(cfg) == hash(C.load_config(path))
  again = C.load_config(_write(tmp_path / "resolved.yaml", C.config_to_yaml(cfg)))
  assert again == cfg
  assert C.config_from_dict(C.config_to_dict(cfg)) == cfg


def test_all_official_variants_present():
  assert set(SPEC_11_2) <= {p.stem for p in ALL_YAMLS}
  assert len(SPEC_11_2) == 18


@pytest.mark.parametrize("name", sorted(SPEC_11_2))
def test_official_yaml_matches_spec_table(name):
  (model, crit, page, keep, prune, quant, num_a, ctx, t, k, b, accum, ts, tw, budgets, alphas) = (
    SPEC_11_2[name]
  )
  cfg = C.load_config(CONFIG_DIR / f"{name}.yaml")
  a, rl = cfg.actions, cfg.rl
  assert cfg.name == name
  assert cfg.model.source == model and cfg.model.dtype == "float32"
  assert a.sparsity_criteria == crit
  if page is not None:
    assert a.page_size == page
  assert list(a.keep_fracs) == pytest.approx(keep)
  assert list(a.struct_prune_choices) == prune
  assert list(a.quant_choices) == quant
  assert a.num_actions == num_a == len(keep) * len(prune) * len(quant)
  assert (cfg.data.context_len, cfg.data.horizon) == (ctx, t)
  assert (rl.num_rollouts, rl.batch_size, rl.grad_accum) == (k, b, accum)
  assert (a.sink_tokens, a.window_tokens) == (ts, tw)
  for axis, want in zip(("kappa", "rho", "eta"), budgets):
    lst = getattr(rl, f"budget_{axis}_list")
    if isinstance(want, set):
      assert lst is not None and set(lst) == want, axis
    else:
      assert lst is None, axis
      got = (getattr(rl, f"budget_{axis}_min"), getattr(rl, f"budget_{axis}_max"))
      assert got == pytest.approx(want), axis
  assert (rl.alpha_kappa, rl.alpha_rho, rl.alpha_eta) == alphas
  # §11.1 shared settings.
  assert (rl.reward_agg, rl.grpo_level, rl.grpo_norm, rl.reward) == (
    "sum",
    "process",
    "center",
    "loglik",
  )
  assert (rl.reward_gamma, rl.task_w_kl, rl.adv_whiten_global) == (0.85, 0.0, True)
  assert (rl.ppo_clip, rl.entropy_coef, cfg.policy.temperature) == (0.2, 0.05, 1.3)
  assert rl.minibatch_decisions == 512  # the buffer is one data batch (no 2048 key)
  assert (cfg.optim.lr, cfg.optim.max_grad_norm, cfg.optim.weight_decay) == (1e-4, 2.0, 0.01)
  assert (
    cfg.policy.d_model,
    cfg.policy.num_heads,
    cfg.policy.num_layers,
    cfg.policy.mlp_ratio,
    cfg.policy.action_embed_dim,
  ) == (512, 4, 1, 4, 32)
  assert cfg.policy.max_len == (1024 if model in (L1B,) else 512)
  assert cfg.train.seed == 1234 and cfg.data.shuffle_seed == 1234
  # Single-axis configs: uncontrolled axes default to target 1.0 (§11.2 notes).
  for axis, want in zip(("kappa", "rho", "eta"), budgets):
    if isinstance(want, set):
      assert getattr(rl, f"budget_{axis}_default") == 1.0


@pytest.mark.parametrize("name,variant", sorted(VARIANT_OF.items()))
def test_inline_grids_agree_with_action_variant_files(name, variant):
  if not (C.ACTIONS_DIR / f"{variant}.yaml").is_file():
    pytest.skip(f"actions/{variant}.yaml not written yet")
  inline = C.load_config(CONFIG_DIR / f"{name}.yaml").actions
  via = C.load_config(CONFIG_DIR / f"{name}.yaml", [f"actions.variant={variant}"]).actions
  assert via.variant == variant
  fields = ["keep_fracs", "struct_prune_choices", "quant_choices", "sparsity_criteria"]
  if via.sparsity_criteria == "quest":
    fields.append("page_size")
  for f in fields:
    assert getattr(via, f) == getattr(inline, f), f


def test_defaults_are_spec_section_0():
  cfg = C.ExperimentConfig()
  assert cfg.model.source == "smollm2-135m"
  assert cfg.actions.num_actions == 10 * 13 * 12
  assert cfg.actions.page_size == 8 and cfg.actions.sparsity_criteria == "quest"
  assert (cfg.data.context_len, cfg.data.horizon, cfg.block_len) == (1024, 16, 1041)
  assert (cfg.rl.num_rollouts, cfg.rl.batch_size, cfg.rl.grad_accum) == (32, 8, 8)
  assert cfg.rl.minibatch_rollouts(cfg.data.horizon) == 32 and cfg.rollouts_per_batch == 256
  assert (cfg.rl.budget_eta_min, cfg.rl.budget_eta_default) == (5 / 16, 7 / 16)
  assert cfg.data.train_fraction == 0.36 and not cfg.actions.quest_protect_sink_window
  assert not cfg.rl.prefill_stale_budget_quirk
  assert cfg.data.eval_blocks == 7 * 16 and cfg.eval.greedy


def test_script_settings_keep_the_former_flag_defaults():
  cfg = C.load_config("smollm2_3L_cpu")
  assert cfg.eval.budgets == ((0.3, 0.6, 0.5), (0.6, 0.8, 0.6), (0.9, 1.0, 0.9))
  sweep = cfg.sweep
  assert (sweep.pages, sweep.blocks, sweep.select_blocks) == ((4, 8), 64, 32)
  assert sweep.budgets == ((0.35, 0.6, 0.375), (0.5, 0.7, 0.5), (0.8, 0.9, 0.75))
  assert (sweep.random_trials, sweep.fl_actions, sweep.fl_variant) == (8, 24, "FL")
  assert (sweep.select_split, sweep.estimate_only) == ("wikitext2-valid", False)
  assert cfg.bench.steps == 4 and cfg.bench.memory_rollouts == (16, 32)
  # issue 10 added the policy-share mode after the former three.
  assert cfg.bench.decode_modes == ("dense", "quest", "controlled", "policy")
  assert (cfg.eval.curve_bins, cfg.eval.hf_check, cfg.eval.progress) == (8, True, True)


def test_budget_bits_become_eta_and_round_trip(tmp_path):
  cfg = C.load_config(
    "smollm2_3L_cpu", ["sweep.budgets=[[0.5, 0.7, 8], [1, 1, 16], [0.2, 0.4, 1]]"]
  )
  assert cfg.sweep.budgets == ((0.5, 0.7, 0.5), (1.0, 1.0, 1.0), (0.2, 0.4, 1.0))
  again = C.load_config(_write(tmp_path / "resolved.yaml", C.config_to_yaml(cfg)))
  assert again == cfg and hash(again) == hash(cfg)


def test_eval_batches_zero_means_every_block():
  cfg = C.load_config("smollm2_3L_cpu", ["data.eval_batches=0"])
  assert cfg.data.eval_blocks is None
  assert C.load_config("smollm2_3L_cpu", ["data.eval_batches=2"]).data.eval_blocks == 32


def test_overrides_types_lists_nested():
  cfg = C.load_config(
    CONFIG_DIR / "smollm2_3L_cpu.yaml",
    [
      "rl.num_rollouts=4",
      "model.dtype=bfloat16",
      "actions.keep_fracs=[0.2, 1.0]",
      "optim.lr=3e-4",
      "rl.adv_whiten_global=false",
      "data.data_dir=/tmp/x",
      "eval.budgets=[[0.5, 0.6, 7], [1, 1, 16]]",
      "rl.budget_kappa_list=[0.3,0.6]",
      "train.num_steps=5",
      "--name=tiny",
    ],
  )
  assert cfg.rl.num_rollouts == 4 and isinstance(cfg.rl.num_rollouts, int)
  assert cfg.model.dtype == "bfloat16"
  assert cfg.actions.keep_fracs == (0.2, 1.0)
  assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
  assert cfg.rl.adv_whiten_global is False
  assert cfg.data.data_dir == "/tmp/x"
  assert cfg.eval.budgets == ((0.5, 0.6, 7 / 16), (1.0, 1.0, 1.0))  # bits -> eta
  assert cfg.rl.budget_kappa_list == (0.3, 0.6)
  assert cfg.train.num_steps == 5 and cfg.name == "tiny"
  # Untouched fields keep the file's values; overrides are applied last.
  assert cfg.actions.struct_prune_choices == ("s40", "s80", "s100")
  assert (
    C.load_config(CONFIG_DIR / "smollm2_3L_cpu.yaml", ["train.num_steps="]).train.num_steps is None
  )
  cfg2 = C.apply_overrides(cfg, ["rl.num_rollouts=8", "rl={batch_size: 2}"])
  assert (cfg2.rl.num_rollouts, cfg2.rl.batch_size, cfg2.optim.lr) == (8, 2, 3e-4)
  assert C.config_from_argv([str(CONFIG_DIR / "base.yaml"), "rl.grad_accum=2"]).rl.grad_accum == 2
  assert C.config_from_argv(["rl.grad_accum=3"]).rl.grad_accum == 3
  # Scripts name a default file used when argv starts with an override (or is empty).
  via_default = C.config_from_argv(["rl.grad_accum=3"], default="smollm2_3L_cpu")
  assert (via_default.name, via_default.rl.grad_accum) == ("smollm2_3L_cpu", 3)
  assert C.config_from_argv([], default="smollm2_3L_cpu").name == "smollm2_3L_cpu"
  assert (
    C.config_from_argv(["base", "rl.grad_accum=2"], default="smollm2_3L_cpu").name
    != "smollm2_3L_cpu"
  )


def test_unknown_key_lists_valid_keys_and_suggests():
  with pytest.raises(ValueError) as e:
    C.load_config(CONFIG_DIR / "base.yaml", ["rl.num_rollout=8"])
  msg = str(e.value)
  assert "'num_rollouts'" in msg and "did you mean" in msg
  for f in dataclasses.fields(C.RLCfg):
    assert f.name in msg
  with pytest.raises(ValueError, match="did you mean 'optim'"):
    C.load_config(CONFIG_DIR / "base.yaml", ["optm.lr=1"])
  with pytest.raises(ValueError, match=r"inert key.*§15"):
    C.load_config(CONFIG_DIR / "base.yaml", ["rl.ppo_epochs=2"])
  with pytest.raises(ValueError, match="data.horizon"):
    C.load_config(CONFIG_DIR / "base.yaml", ["rl.rollout_len=8"])
  with pytest.raises(ValueError, match="section.field=value"):
    C.load_config(CONFIG_DIR / "base.yaml", ["rl.num_rollouts"])
  with pytest.raises(ValueError, match="at most two levels"):
    C.load_config(CONFIG_DIR / "base.yaml", ["rl.a.b=1"])


@pytest.mark.parametrize(
  "override,match",
  [
    ("rl.num_rollouts=abc", r"rl.num_rollouts: expected an integer, got 'abc'"),
    ("rl.num_rollouts=2.5", "expected an integer"),
    ("rl.num_rollouts=true", "expected an integer"),
    ("rl.adv_whiten_global=maybe", "expected true or false"),
    ("optim.lr=fast", "expected a number"),
    ("actions.keep_fracs=0.5", "expected a list"),
    ("model.dtype=bfloat", "did you mean 'bfloat16'"),
    ("rl.reward_agg=avg", "not one of"),
    ("rl.num_rollouts=1", "rl.num_rollouts=1: must be >= 2"),
    ("data.horizon=0", "data.horizon=0: must be >= 1"),
    ("actions.page_size=0", "page_size"),
    ("policy.temperature=0", "temperature"),
    ("rl.reward_gamma=1.5", r"reward_gamma=1.5: must be in \[0, 1\]"),
    ("rl.budget_kappa_min=-0.1", "budget_kappa_min"),
    ("rl.budget_rho_max=1.2", "budget_rho_max"),
    ("rl.budget_eta_list=[0.5, 2.0]", "budget_eta_list"),
    ("actions.quant_choices=[q5, q17]", r"q17.*\[2, 16\]"),
    ("actions.quant_choices=[q1, q16]", "q1"),
    ("actions.struct_prune_choices=[s0, s100]", "s0"),
    ("actions.struct_prune_choices=[x40, s100]", "x40"),
    ("actions.keep_fracs=[0.1, 0.5]", "must contain 1.0"),
    ("actions.keep_fracs=[0, 1.0]", r"must be in \(0, 1\]"),
    ("actions.keep_fracs=[1.0, 1.0]", "duplicate"),
    ("eval.budgets=[[0.5, 0.6, 17]]", r"eval.budgets=.*bit-width in \[2, 16\]"),
    ("eval.budgets=[[0.5, 0.6, 1.5]]", r"eval.budgets=.*eta 1.5"),
    ("eval.budgets=[]", "eval.budgets=.*at least one"),
    ("eval.budgets=[[0.5, 0.6]]", r"eval.budgets\[0\]: expected a list of 3"),
    ("sweep.budgets=[[0, 0.6, 0.5]]", r"sweep.budgets=.*kappa and rho must be in \(0, 1\]"),
    ("sweep.budgets=[[0.5, 0.6, 0]]", r"sweep.budgets=.*eta must be in \(0, 1\]"),
    ("sweep.pages=[]", "sweep.pages=.*at least one"),
    ("sweep.pages=[4, 0]", "sweep.pages=.*>= 1"),
    ("sweep.random_trials=0", "sweep.random_trials=0: must be >= 1"),
    ("sweep.fl_actions=-1", "sweep.fl_actions=-1: must be >= 0"),
    ("sweep.fl_variant=XL", "sweep.fl_variant='XL': no action variant 'XL'"),
    ("bench.decode_modes=[dense, fast]", r"bench.decode_modes\[1\]='fast' is not one of"),
    ("bench.steps=0", "bench.steps=0: must be >= 1"),
    ("eval.curve_bins=0", "eval.curve_bins=0: must be >= 1"),
    ("data.eval_batches=-1", "data.eval_batches=-1: must be >= 0"),
    ("actions.sparsity_criteria=topk", "not one of 'quest', 'recency', 'relevancy'"),
    ("data.horizon=2048", "policy.max_len"),
    ("policy.num_heads=3", "divisible"),
    ("rl.reward=kl", "conflicts"),  # needs task_w_kl in {0, 1}: set below
  ],
)
def test_bad_values_rejected(override, match):
  extra = ["rl.task_w_kl=0.5"] if override == "rl.reward=kl" else []
  with pytest.raises(ValueError, match=match):
    C.load_config(CONFIG_DIR / "smollm2_3L_cpu.yaml", [override] + extra)


def test_direct_construction_is_checked_and_frozen():
  a = C.ActionsCfg(keep_fracs=[0.5, 1.0])  # lists become tuples: hashable
  assert a.keep_fracs == (0.5, 1.0) and hash(a)
  with pytest.raises(dataclasses.FrozenInstanceError):
    a.page_size = 4  # type: ignore[misc]
  with pytest.raises(ValueError, match="rl.num_rollouts"):
    C.RLCfg(num_rollouts="8")
  with pytest.raises(ValueError, match="expected RLCfg"):
    C.ExperimentConfig(rl={"num_rollouts": 8})
  assert C.RLCfg(reward="kl", task_w_kl=0.0).kl_weight == 1.0


def test_inheritance_chain_lists_replace_and_cycles(tmp_path):
  _write(
    tmp_path / "root.yaml",
    {
      "name": "root",
      "rl": {"num_rollouts": 4, "batch_size": 2},
      "actions": {"keep_fracs": [0.1, 0.5, 1.0]},
    },
  )
  _write(tmp_path / "mid.yaml", {"base": "root.yaml", "rl": {"num_rollouts": 6}})
  _write(tmp_path / "other.yaml", {"optim": {"lr": 0.5}, "rl": {"batch_size": 3}})
  _write(
    tmp_path / "leaf.yaml",
    {"defaults": ["mid", "other.yaml"], "name": "leaf", "actions": {"keep_fracs": [1.0]}},
  )
  cfg = C.load_config(tmp_path / "leaf.yaml")
  assert cfg.name == "leaf"
  assert (cfg.rl.num_rollouts, cfg.rl.batch_size, cfg.optim.lr) == (6, 3, 0.5)
  assert cfg.actions.keep_fracs == (1.0,)  # replaced, not appended
  assert cfg.rl.grad_accum == C.RLCfg().grad_accum  # untouched default
  _write(tmp_path / "a.yaml", {"base": "b.yaml"})
  _write(tmp_path / "b.yaml", {"base": "a.yaml"})
  with pytest.raises(ValueError, match="cycle"):
    C.load_config(tmp_path / "a.yaml")
  _write(tmp_path / "orphan.yaml", {"base": "missing.yaml"})
  with pytest.raises(FileNotFoundError, match="missing.yaml"):
    C.load_config(tmp_path / "orphan.yaml")
  with pytest.raises(FileNotFoundError, match="smollm2_3L_cpu"):
    C.load_config(tmp_path / "nope.yaml")
  _write(tmp_path / "list.yaml", "- 1\n- 2\n")
  with pytest.raises(ValueError, match="mapping"):
    C.load_config(tmp_path / "list.yaml")
  assert C.load_config("smollm2_3L_cpu").name == "smollm2_3L_cpu"  # by name


def test_action_variant_resolution(tmp_path, monkeypatch):
  actions_dir = tmp_path / "actions"
  actions_dir.mkdir()
  monkeypatch.setattr(config_loading, "ACTIONS_DIR", actions_dir)
  _write(
    actions_dir / "two.yaml",
    {
      "keep_fracs": [0.3, 1.0],
      "struct_prune_choices": ["s50", "s100"],
      "quant_choices": ["q4", "q16"],
      "sparsity_criteria": "quest",
      "page_size": 2,
    },
  )
  _write(tmp_path / "exp.yaml", {"actions": {"variant": "two", "page_size": 16}})
  cfg = C.load_config(tmp_path / "exp.yaml")
  assert cfg.actions.keep_fracs == (0.3, 1.0) and cfg.actions.quant_choices == ("q4", "q16")
  assert cfg.actions.page_size == 16  # the naming layer's own key wins
  # A later layer's variant replaces inline lists from the file.
  base = C.load_config(CONFIG_DIR / "smollm2_3L_cpu.yaml", ["actions.variant=two"])
  assert base.actions.struct_prune_choices == ("s50", "s100") and base.actions.page_size == 2
  assert C.config_from_dict({"actions": {"variant": "two"}}).actions.num_actions == 8
  with pytest.raises(FileNotFoundError, match="Available variants: two;"):
    C.load_config(tmp_path / "exp.yaml", ["actions.variant=three"])
  _write(actions_dir / "bad.yaml", {"keep_fracs": [1.0], "page_sise": 4})
  with pytest.raises(ValueError, match="did you mean 'page_size'"):
    C.load_config(tmp_path / "exp.yaml", ["actions.variant=bad"])
  # The file is validated by the one variant parser (efficiency.actions.read_variant).
  _write(
    actions_dir / "crit.yaml",
    {
      "keep_fracs": [1.0],
      "struct_prune_choices": ["s100"],
      "quant_choices": ["q16"],
      "sparsity_criteria": "topk",
      "page_size": 4,
    },
  )
  with pytest.raises(ValueError, match=r"actions.variant='crit'.*sparsity_criteria='topk'"):
    C.load_config(tmp_path / "exp.yaml", ["actions.variant=crit"])


def test_one_tuple_of_sparsity_criteria():
  from sol_jax.efficiency import actions, controls

  hint = typing.get_type_hints(C.ActionsCfg)["sparsity_criteria"]
  assert typing.get_args(hint) == actions.SPARSITY_CRITERIA
  assert controls.SPARSITY_CRITERIA is actions.SPARSITY_CRITERIA


def test_validate_mesh():
  cfg = C.load_config(CONFIG_DIR / "smollm2_3L_cpu.yaml")  # B = 8, 32 rollouts/minibatch
  assert C.validate_mesh(cfg, 1) == (1, 1)
  assert C.validate_mesh(cfg, 8) == (8, 1)
  assert C.validate_mesh(C.apply_overrides(cfg, ["mesh.model=2"]), 8) == (4, 2)
  with pytest.raises(ValueError, match="rl.batch_size=8 must be divisible"):
    C.validate_mesh(cfg, 3)
  with pytest.raises(ValueError, match="are available"):
    C.validate_mesh(C.apply_overrides(cfg, ["mesh.data=2"]), 8)
  with pytest.raises(ValueError, match="minibatch"):
    C.validate_mesh(C.apply_overrides(cfg, ["data.horizon=128", "rl.batch_size=16"]), 16)
  with pytest.raises(ValueError, match="mesh.model=3"):
    C.validate_mesh(C.apply_overrides(cfg, ["mesh.model=3"]), 8)


def test_flat_dict_for_hparams():
  flat = C.config_to_flat_dict(C.ExperimentConfig())
  assert flat["rl.num_rollouts"] == 32 and flat["name"] == "default"
  assert flat["actions.keep_fracs"].startswith("[0.1, 0.2")
  assert flat["data.data_dir"] == "None"
  assert all(isinstance(v, (int, float, str, bool)) for v in flat.values())


def test_boundary_values_accepted_and_open_ends_rejected():
  cfg = C.load_config(
    CONFIG_DIR / "smollm2_3L_cpu.yaml",
    [
      "rl.reward_gamma=1.0",
      "rl.task_w_kl=1",
      "rl.budget_kappa_min=1",
      "rl.budget_kappa_max=1",
      "actions.sink_tokens=0",
      "rl.ppo_clip=0",
      "rl.num_rollouts=2",
      "data.horizon=1",
      "actions.quant_choices=[q2, q16]",
      "actions.struct_prune_choices=[s100]",
    ],
  )
  assert (cfg.rl.reward_gamma, cfg.rl.task_w_kl, cfg.rl.num_rollouts) == (1.0, 1.0, 2)
  assert cfg.actions.num_actions == 3 * 1 * 2
  with pytest.raises(ValueError, match=r"ppo_clip=1.0: must be in \[0, 1\)"):
    C.load_config(CONFIG_DIR / "smollm2_3L_cpu.yaml", ["rl.ppo_clip=1.0"])
  with pytest.raises(ValueError, match=r"train_fraction=0.0: must be in \(0, 1\]"):
    C.load_config(CONFIG_DIR / "smollm2_3L_cpu.yaml", ["data.train_fraction=0"])


def test_cpu_variants_are_cpu_sized():
  for name, num_a, page in (
    ("smollm2_3L_cpu", 27, 8),
    ("smollm2_2L_cpu", 8, 4),
    ("smollm2_FL_cpu", 1560, 8),
  ):
    cfg = C.load_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg.model.source == "smollm2-135m" and cfg.model.dtype == "float32"
    assert (cfg.data.context_len, cfg.data.horizon) == (512, 16)
    assert (cfg.rl.num_rollouts, cfg.rl.batch_size) == (16, 8)
    assert (cfg.actions.num_actions, cfg.actions.page_size) == (num_a, page)
