"""Typed config fields: type coercion and range rules for frozen dataclasses."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, Literal


def ranged(default: Any, rule: str) -> Any:
  """A field whose value (or each item) satisfies ">= 1", "> 0", "[0, 1)"..."""
  return dataclasses.field(default=default, metadata={"rule": rule})


def _satisfies(v: float, rule: str) -> bool:
  if rule.startswith(">="):
    return v >= float(rule[2:])
  if rule.startswith(">"):
    return v > float(rule[1:])
  lo, hi = (float(x) for x in rule[1:-1].split(","))
  return ((lo <= v) if rule[0] == "[" else (lo < v)) and (
    (v <= hi) if rule[-1] == "]" else (v < hi)
  )


class Section:
  """Mixin: coerces field types and checks ranges after construction."""

  _name = ""

  def __post_init__(self):
    hints = typing.get_type_hints(type(self))
    for f in dataclasses.fields(self):
      where = f"{self._name}.{f.name}" if self._name else f.name
      value = coerce(getattr(self, f.name), hints[f.name], where)
      object.__setattr__(self, f.name, value)
      rule = f.metadata.get("rule")
      items = value if isinstance(value, tuple) else () if value is None else (value,)
      if rule and not all(_satisfies(v, rule) for v in items):
        want = f"in {rule}" if rule[0] in "[(" else rule
        raise ValueError(f"config {where}={value!r}: must be {want}")
    self._validate()

  def _validate(self):
    pass

  def _check(self, ok: bool, field: str, why: str):
    if not ok:
      raise ValueError(f"config {self._name}.{field}={getattr(self, field)!r}: {why}")


def coerce(value: Any, tp: Any, where: str) -> Any:
  """Returns `value` converted to the annotated type, or raises ValueError."""
  origin, args = typing.get_origin(tp), typing.get_args(tp)
  bad = lambda want: ValueError(
    f"config {where}: expected {want}, got {value!r} ({type(value).__name__})"
  )
  if dataclasses.is_dataclass(tp):
    if isinstance(value, tp):
      return value
    raise bad(tp.__name__)
  if origin is typing.Union:
    if value is None and type(None) in args:
      return None
    (inner,) = [a for a in args if a is not type(None)]
    return coerce(value, inner, where)
  if origin is Literal:
    if value in args:
      return value
    close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"config {where}={value!r} is not one of {', '.join(map(repr, args))}{hint}")
  if origin is tuple:
    if not isinstance(value, (list, tuple)):
      raise bad("a list such as [a, b]")
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
      raise bad(f"a list of {len(args)} items")
    return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  if tp is bool:
    if isinstance(value, bool):
      return value
    raise bad("true or false")
  if tp is int:
    if number and isinstance(value, int):
      return value
    raise bad("an integer")
  if tp is float:
    if isinstance(value, str):
      try:  # YAML 1.1 reads 1e-4 (no dot) as a string.
        value, number = float(value), True
      except ValueError:
        pass
    if number and not math.isnan(value):
      return float(value)
    raise bad("a number")
  if tp is str:
    if isinstance(value, str) or number:
      return str(value)
    raise bad("a string")
  raise TypeError(f"config {where}: unsupported annotation {tp}")
