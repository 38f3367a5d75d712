"""The joint action grid (method §5) and effective-step forcing (method §4.6).

An action is a triple (κ, ρ, b): token keep fraction, MLP-input channel keep
fraction and MLP-output bit-width. The flat index is κ-major, then ρ, then b,
in the order the config lists them:

  a = i_κ · (|ρ| · |b|) + i_ρ · |b| + i_b.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import itertools
import math
import pathlib
import re
from typing import Any, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import yaml

AXES = ("token", "prune", "quant")
MIN_BITS, MAX_BITS = 2, 16
# The token-sparsity criteria (method §4.2); the one list, read by the controls and the config.
SPARSITY_CRITERIA = ("quest", "recency", "relevancy")
# Variant YAMLs live in the repository, next to the experiment configs.
VARIANT_DIR = pathlib.Path(str(importlib.resources.files("sol_jax") / "configs" / "actions"))
_PRUNE_TAG = re.compile(r"s(\d+(?:\.\d+)?)")  # percent kept, e.g. s40 or s42.5
_QUANT_TAG = re.compile(r"q(\d+)")
_FRAC_TOL = 1e-6  # lookup tolerance for fractions given as floats


def parse_keep_frac(value: Any, name: str = "keep_fracs") -> float:
  """A keep fraction: a real number in (0, 1]."""
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise ValueError(f"{name} entry {value!r} is not a number; use a fraction in (0, 1], e.g. 0.1.")
  frac = float(value)
  if not 0.0 < frac <= 1.0:
    raise ValueError(f"{name} entry {value!r} is outside (0, 1]; use e.g. 0.1 ... 1.0.")
  return frac


def parse_prune_tag(tag: Any) -> float:
  """'s40' -> 0.40 (keep 40 % of the MLP input channels); 's100' -> 1.0."""
  match = _PRUNE_TAG.fullmatch(tag) if isinstance(tag, str) else None
  if match is None:
    raise ValueError(
      f"struct_prune_choices entry {tag!r} is malformed; expected 's<percent kept>', e.g. 's40'."
    )
  frac = float(match.group(1)) / 100.0
  if not 0.0 < frac <= 1.0:
    raise ValueError(
      f"struct_prune_choices entry {tag!r} keeps {frac:.0%}; the kept share must be in (0, 100] %."
    )
  return frac


def parse_quant_tag(tag: Any) -> int:
  """'q5' -> 5 bits; 'q16' -> 16 bits (no quantization)."""
  match = _QUANT_TAG.fullmatch(tag) if isinstance(tag, str) else None
  if match is None:
    raise ValueError(
      f"quant_choices entry {tag!r} is malformed; expected 'q<bits>', e.g. 'q5' or 'q16'."
    )
  bits = int(match.group(1))
  if not MIN_BITS <= bits <= MAX_BITS:
    raise ValueError(
      f"quant_choices entry {tag!r} has {bits} bits; bit-widths must be in [{MIN_BITS}, {MAX_BITS}]."
    )
  return bits


def _percent(frac: float) -> str:
  """0.6 -> '060'; fractional percents keep one decimal (0.425 -> '042.5')."""
  pct = frac * 100
  return f"{round(pct):03d}" if abs(pct - round(pct)) < 1e-6 else f"{pct:05.1f}"


def _readonly(x: np.ndarray) -> np.ndarray:
  x.flags.writeable = False
  return x


@dataclasses.dataclass(frozen=True)
class ActionSpace:
  """The grid keep_fracs × prune_fracs × quant_bits. Hashable: a valid jit static arg."""

  keep_fracs: tuple[float, ...]
  prune_fracs: tuple[float, ...]
  quant_bits: tuple[int, ...]

  def __post_init__(self):
    keep = tuple(parse_keep_frac(v) for v in self.keep_fracs)
    prune = tuple(parse_keep_frac(v, "prune_fracs") for v in self.prune_fracs)
    for b in self.quant_bits:
      if (
        isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not MIN_BITS <= b <= MAX_BITS
      ):
        raise ValueError(f"quant bit-width {b!r} must be an integer in [{MIN_BITS}, {MAX_BITS}].")
    bits = tuple(int(b) for b in self.quant_bits)
    for name, levels in (
      ("keep_fracs", keep),
      ("struct_prune_choices", prune),
      ("quant_choices", bits),
    ):
      if not levels:
        raise ValueError(
          f"{name} is empty; every axis needs at least one level (use [1.0], ['s100'] or ['q16'])."
        )
      if len(set(levels)) != len(levels):
        raise ValueError(f"{name} has duplicate levels {levels}; each level must appear once.")
    # Normalise to plain python types so equal grids hash equally.
    object.__setattr__(self, "keep_fracs", keep)
    object.__setattr__(self, "prune_fracs", prune)
    object.__setattr__(self, "quant_bits", bits)
    if self._find(1.0, None, None) is None:
      raise ValueError(
        f"keep_fracs {keep} has no 1.0 level, so there is no dense action (method §5); add 1.0."
      )

  @classmethod
  def from_config(
    cls,
    keep_fracs: Sequence[Any],
    struct_prune_choices: Sequence[Any],
    quant_choices: Sequence[Any],
  ) -> "ActionSpace":
    """Builds the grid from config lists: floats, 's<pct>' tags and 'q<bits>' tags."""
    for name, value in (
      ("keep_fracs", keep_fracs),
      ("struct_prune_choices", struct_prune_choices),
      ("quant_choices", quant_choices),
    ):
      if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a list, got {value!r}.")
    return cls(
      tuple(parse_keep_frac(v) for v in keep_fracs),
      tuple(parse_prune_tag(t) for t in struct_prune_choices),
      tuple(parse_quant_tag(t) for t in quant_choices),
    )

  @classmethod
  def from_yaml(cls, path: Union[str, pathlib.Path]) -> "ActionSpace":
    return ActionVariant.from_yaml(path).space

  # Sizes and per-action arrays (numpy, read-only; usable as jnp constants).
  @property
  def shape(self) -> tuple[int, int, int]:
    return len(self.keep_fracs), len(self.prune_fracs), len(self.quant_bits)

  @property
  def num_actions(self) -> int:
    return math.prod(self.shape)

  @functools.cached_property
  def _table(self) -> np.ndarray:
    return np.array(
      list(
        itertools.product(
          range(len(self.keep_fracs)), range(len(self.prune_fracs)), range(len(self.quant_bits))
        )
      ),
      dtype=np.int32,
    ).reshape(-1, 3)

  @functools.cached_property
  def kappa(self) -> np.ndarray:
    return _readonly(np.asarray(self.keep_fracs, np.float32)[self._table[:, 0]])

  @functools.cached_property
  def rho(self) -> np.ndarray:
    return _readonly(np.asarray(self.prune_fracs, np.float32)[self._table[:, 1]])

  @functools.cached_property
  def bits(self) -> np.ndarray:
    return _readonly(np.asarray(self.quant_bits, np.int32)[self._table[:, 2]])

  @functools.cached_property
  def eta(self) -> np.ndarray:
    """Quantization ratio b/16 per action."""
    return _readonly(self.bits.astype(np.float32) / np.float32(MAX_BITS))

  @property
  def rho_max(self) -> float:
    return max(self.prune_fracs)

  @property
  def struct_prune_choices(self) -> tuple[str, ...]:
    return tuple(f"s{r * 100:.10g}" for r in self.prune_fracs)

  @property
  def quant_choices(self) -> tuple[str, ...]:
    return tuple(f"q{b}" for b in self.quant_bits)

  @functools.cached_property
  def tags(self) -> tuple[str, ...]:
    """Readable per-action names, e.g. 'k060-s080-q7'."""
    return tuple(
      f"k{_percent(self.keep_fracs[i])}-s{_percent(self.prune_fracs[j])}-q{self.quant_bits[k]}"
      for i, j, k in self._table
    )

  @property
  def single_level_axes(self) -> tuple[str, ...]:
    """Axes with one level: their budget-penalty weight must be 0 (method §5)."""
    return tuple(axis for axis, n in zip(AXES, self.shape) if n == 1)

  def penalty_weights(self, token: float, prune: float, quant: float) -> tuple[float, float, float]:
    """The config's α per axis with single-level axes forced to 0."""
    single = self.single_level_axes
    return tuple(
      0.0 if axis in single else float(w) for axis, w in zip(AXES, (token, prune, quant))
    )

  def index_from_levels(self, i_kappa, i_rho, i_bits):
    """Flat index from per-axis level positions (list order); works on numpy and jnp arrays."""
    _, n_rho, n_bits = self.shape
    return (i_kappa * n_rho + i_rho) * n_bits + i_bits

  def levels_of(self, action):
    """Per-axis level positions (i_κ, i_ρ, i_b) of flat indices."""
    _, n_rho, n_bits = self.shape
    return action // (n_rho * n_bits), (action // n_bits) % n_rho, action % n_bits

  def _find(
    self, kappa: Optional[float], rho: Optional[float], bits: Optional[int]
  ) -> Optional[int]:
    """First flat index matching the given values (None matches anything)."""
    for a, (i, j, k) in enumerate(itertools.product(*map(range, self.shape))):
      if kappa is not None and abs(self.keep_fracs[i] - kappa) > _FRAC_TOL:
        continue
      if rho is not None and abs(self.prune_fracs[j] - rho) > _FRAC_TOL:
        continue
      if bits is not None and self.quant_bits[k] != bits:
        continue
      return a
    return None

  def lookup(self, kappa: float, rho: float, bits: int) -> int:
    """Flat index of (κ, ρ, b); ValueError if that combination is not in the grid."""
    a = self._find(float(kappa), float(rho), int(bits))
    if a is None:
      raise ValueError(
        f"action (kappa={kappa}, rho={rho}, bits={bits}) is not in the grid "
        f"keep_fracs={self.keep_fracs}, prune={self.struct_prune_choices}, "
        f"quant={self.quant_choices}."
      )
    return a

  @functools.cached_property
  def dense_index(self) -> int:
    """First index with κ=1, ρ=1, b=16; else the first with κ=1 (method §5)."""
    a = self._find(1.0, 1.0, MAX_BITS)
    return a if a is not None else self._find(1.0, None, None)

  @functools.cached_property
  def forced_dense_index(self) -> int:
    """What a non-effective step executes: κ=1, ρ=max level, b=max level (method §4.6).

    Equals `dense_index` whenever the grid has ρ=1 and b=16 (every official grid
    but Q-Q5Q10, where it is q10 rather than q5).
    """
    return self.lookup(1.0, self.rho_max, max(self.quant_bits))


VARIANT_KEYS = (
  "keep_fracs",
  "struct_prune_choices",
  "quant_choices",
  "sparsity_criteria",
  "page_size",
)


def available_variants(config_dir: Union[str, pathlib.Path] = VARIANT_DIR) -> tuple[str, ...]:
  return tuple(sorted(p.stem for p in pathlib.Path(config_dir).glob("*.yaml")))


def variant_path(
  name: Union[str, pathlib.Path], config_dir: Union[str, pathlib.Path] = VARIANT_DIR
) -> pathlib.Path:
  """A variant file: an existing .yaml path, or `<config_dir>/<name>.yaml`."""
  path = pathlib.Path(name)
  if path.suffix in (".yaml", ".yml") and path.is_file():
    return path
  path = pathlib.Path(config_dir) / f"{name}.yaml"
  if not path.is_file():
    raise FileNotFoundError(
      f"no action variant {str(name)!r} in {config_dir}. Available variants: "
      f"{', '.join(available_variants(config_dir)) or '(none)'}"
    )
  return path


def read_variant(
  name: Union[str, pathlib.Path], config_dir: Union[str, pathlib.Path] = VARIANT_DIR
) -> dict[str, Any]:
  """The validated mapping of a variant file: exactly `VARIANT_KEYS` (method §5).

  The one parser of sol_jax/configs/actions/*.yaml; the config loader merges
  its result into the `actions` section.
  """
  path = variant_path(name, config_dir)
  try:
    raw = yaml.safe_load(path.read_text())
  except yaml.YAMLError as e:
    raise ValueError(f"action variant file {path} is not valid YAML: {e}") from None
  _check_variant(raw, str(path))
  return dict(raw)


def _check_variant(raw: Any, where: str) -> None:
  if not isinstance(raw, Mapping):
    raise ValueError(
      f"action variant {where} must be a mapping with keys {list(VARIANT_KEYS)}, "
      f"got {type(raw).__name__}."
    )
  missing = [k for k in VARIANT_KEYS if k not in raw]
  unknown = [str(k) for k in raw if k not in VARIANT_KEYS]
  if missing or unknown:
    hints = [
      f" (did you mean {close[0]!r}?)"
      for k in unknown
      if (close := difflib.get_close_matches(k, VARIANT_KEYS, n=1))
    ]
    raise ValueError(
      f"action variant {where}: missing keys {missing}, unknown keys {unknown}"
      f"{''.join(hints)}; expected exactly {list(VARIANT_KEYS)}."
    )
  if raw["sparsity_criteria"] not in SPARSITY_CRITERIA:
    raise ValueError(
      f"action variant {where}: sparsity_criteria={raw['sparsity_criteria']!r}; "
      f"use one of {SPARSITY_CRITERIA}."
    )
  page = raw["page_size"]
  if isinstance(page, bool) or not isinstance(page, int) or page < 1:
    raise ValueError(f"action variant {where}: page_size={page!r} must be a positive integer.")
  ActionSpace.from_config(raw["keep_fracs"], raw["struct_prune_choices"], raw["quant_choices"])


@dataclasses.dataclass(frozen=True)
class ActionVariant:
  """A named action-space config: the grid plus its token-sparsity mechanism settings."""

  name: str
  space: ActionSpace
  sparsity_criteria: str
  page_size: int

  @classmethod
  def from_mapping(cls, cfg: Mapping[str, Any], name: str = "") -> "ActionVariant":
    _check_variant(cfg, repr(name))
    space = ActionSpace.from_config(
      cfg["keep_fracs"], cfg["struct_prune_choices"], cfg["quant_choices"]
    )
    return cls(name, space, cfg["sparsity_criteria"], cfg["page_size"])

  @classmethod
  def from_yaml(cls, path: Union[str, pathlib.Path]) -> "ActionVariant":
    path = pathlib.Path(path)
    if not path.is_file():
      raise FileNotFoundError(f"action variant file {path} does not exist.")
    return cls.from_mapping(read_variant(path), name=path.stem)


def load_action_variant(
  name: str, config_dir: Union[str, pathlib.Path] = VARIANT_DIR
) -> ActionVariant:
  """Loads a named variant of method §5, e.g. 'FL', '3L', 'P-S40S100'."""
  path = variant_path(name, config_dir)
  return ActionVariant.from_mapping(read_variant(path), name=path.stem)


def is_effective(kv_len: jax.Array, ts: int, tw: int) -> jax.Array:
  """A controlled step counts (and may compress) iff kv_len > Ts + Tw + 1 (method §4.6)."""
  return jnp.asarray(kv_len) > ts + tw + 1


def force_dense(action: jax.Array, effective: jax.Array, space: ActionSpace) -> jax.Array:
  """The executed action: the chosen one on effective steps, dense otherwise."""
  action = jnp.asarray(action)
  return jnp.where(effective, action, jnp.asarray(space.forced_dense_index, action.dtype))
