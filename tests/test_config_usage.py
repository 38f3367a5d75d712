"""Every config key is read by some code: a key that nothing reads is a dead setting.

The check is static. It parses every module of sol_jax/ and experiments/ and
collects attribute reads `<qualifier>.<field>` (and `getattr(x, "field")`, with
f-string names such as f"budget_{axis}_min" read as patterns). A read counts for
section S when its qualifier is the section itself (`cfg.rl.ppo_clip`,
`setup.rl.ppo_clip`), a name `S_cfg` (`mesh_cfg.data`), or a local name bound
in the same function to `<expr>.S` (`a = cfg.actions`) or annotated with the
section's class (`cfg: RLCfg`). Reads inside sol_jax/config count only in
methods and functions that code outside the config package calls (so a
validator reading a field is not a use, but `cfg.data.eval_blocks` reading
`eval_batches` is). Sections handed over whole to another dataclass
(`PolicyConfig.from_section`) must have every key as a field there that its
module reads. Tests do not count as readers.
"""

from __future__ import annotations

import ast
import dataclasses
import gc
import pathlib
import re

from sol_jax.config import sections
from sol_jax.policy import network

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG_PKG = ROOT / "sol_jax" / "config"
SECTIONS = {
  f.name: f.default_factory
  for f in dataclasses.fields(sections.ExperimentConfig)
  if f.default_factory is not dataclasses.MISSING
}
TOP_LEVEL = "cfg"  # the qualifier (and annotation) of the top-level keys
CLASS_SECTION = {cls.__name__: name for name, cls in SECTIONS.items()}
CLASS_SECTION["ExperimentConfig"] = TOP_LEVEL
# Keys that are read by no attribute access, with the reason.
EXEMPT = {
  "description": "a note on the config file, shown in its YAML only",
  "actions.variant": "expanded into the grid lists by config.loading when the file is read",
}
# Sections passed whole to a dataclass: that class and the module that reads it.
FORWARDED = {
  "policy": (network.PolicyConfig, ROOT / "sol_jax" / "policy" / "network.py", "from_section")
}
NOT_A_USE = {"_validate", "_check", "__post_init__"}


def _name_of(node) -> str | None:
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    return node.attr
  if isinstance(node, ast.Constant) and isinstance(node.value, str):
    return node.value.split(".")[-1]
  return None


def _pattern(node) -> str | None:
  """A getattr name: a literal, or an f-string with its holes as `\\w+`."""
  if isinstance(node, ast.Constant) and isinstance(node.value, str):
    return re.escape(node.value)
  if isinstance(node, ast.JoinedStr):
    return "".join(
      re.escape(v.value) if isinstance(v, ast.Constant) else r"\w+" for v in node.values
    )
  return None


def _section(qualifier: str | None, scope: dict) -> str | None:
  if qualifier is None:
    return None
  if qualifier in scope:
    return scope[qualifier]
  if qualifier in SECTIONS:
    return qualifier
  if qualifier.endswith("_cfg") and qualifier[:-4] in SECTIONS:
    return qualifier[:-4]
  return TOP_LEVEL if qualifier == TOP_LEVEL else None


def _local_scope(fn, scope: dict) -> dict:
  """Names a function binds to sections: annotated arguments and `x = <expr>.section`."""
  scope = dict(scope)
  args = fn.args
  for arg in args.posonlyargs + args.args + args.kwonlyargs:
    section = CLASS_SECTION.get(_name_of(arg.annotation)) if arg.annotation else None
    if section is not None:
      scope[arg.arg] = section
  for node in ast.walk(fn):
    if (
      isinstance(node, ast.Assign)
      and isinstance(node.value, ast.Attribute)
      and node.value.attr in SECTIONS
    ):
      for target in node.targets:
        if isinstance(target, ast.Name):
          scope[target.id] = node.value.attr
  return scope


def _reads(node, scope: dict, out: set) -> None:
  """Adds (section, field pattern) for every config read under `node`."""
  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
    if not isinstance(node, ast.Lambda):
      scope = _local_scope(node, scope)
  elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
    section = _section(_name_of(node.value), scope)
    if section is not None:
      out.add((section, re.escape(node.attr)))
  elif (
    isinstance(node, ast.Call)
    and isinstance(node.func, ast.Name)
    and node.func.id == "getattr"
    and len(node.args) >= 2
  ):
    section, pattern = _section(_name_of(node.args[0]), scope), _pattern(node.args[1])
    if section is not None and pattern is not None:
      out.add((section, pattern))
  for child in ast.iter_child_nodes(node):
    _reads(child, scope, out)


def _names_used(tree) -> set[str]:
  return {
    n.attr if isinstance(n, ast.Attribute) else n.id
    for n in ast.walk(tree)
    if isinstance(n, (ast.Attribute, ast.Name))
  }


def _parse(source: str, filename: str = "<unknown>") -> ast.Module:
  """ast.parse with the garbage collector paused.

  Seen once in a full-suite CI run on CPython 3.11.7: "SystemError: AST
  constructor recursion depth mismatch", the interpreter's AST converter losing
  count of its depth; the likeliest trigger is a GC pass running Python
  finalizers (objects left by earlier tests) while the tree is being built.
  """
  enabled = gc.isenabled()
  gc.disable()
  try:
    return ast.parse(source, filename)
  finally:
    if enabled:
      gc.enable()


def collect_reads(extra_sources: tuple[str, ...] = ()) -> set[tuple[str, str]]:
  """(section, field pattern) read anywhere in sol_jax/ and experiments/ (see module doc)."""
  outside = [
    p
    for d in ("sol_jax", "experiments")
    for p in sorted((ROOT / d).rglob("*.py"))
    if CONFIG_PKG not in p.parents
  ]
  trees = [_parse(p.read_text(), str(p)) for p in outside]
  trees += [_parse(src) for src in extra_sources]
  reads, used = set(), set()
  for tree in trees:
    _reads(tree, {}, reads)
    used |= _names_used(tree)
  # Config-package code counts only in units that outside code calls.
  for path in sorted(CONFIG_PKG.glob("*.py")):
    for node in _parse(path.read_text(), str(path)).body:
      units, scope = [node], {}
      if isinstance(node, ast.ClassDef) and node.name in CLASS_SECTION:
        units, scope = node.body, {"self": CLASS_SECTION[node.name]}
      for unit in units:
        if isinstance(unit, ast.FunctionDef) and unit.name not in NOT_A_USE and unit.name in used:
          _reads(unit, scope, reads)
  return reads


def config_keys() -> dict[str, list[str]]:
  keys = {
    TOP_LEVEL: [
      f.name for f in dataclasses.fields(sections.ExperimentConfig) if f.name not in SECTIONS
    ]
  }
  keys.update({s: [f.name for f in dataclasses.fields(cls)] for s, cls in SECTIONS.items()})
  return keys


def _key(section: str, field: str) -> str:
  return field if section == TOP_LEVEL else f"{section}.{field}"


def unread_keys(keys: dict[str, list[str]], reads: set[tuple[str, str]]) -> list[str]:
  unread = []
  for section, fields in keys.items():
    if section in FORWARDED:
      continue
    for field in fields:
      hit = any(s == section and re.fullmatch(p, field) for s, p in reads)
      if not hit and _key(section, field) not in EXEMPT:
        unread.append(_key(section, field))
  return unread


def test_every_config_key_is_read_by_some_code():
  assert unread_keys(config_keys(), collect_reads()) == []


def test_forwarded_sections_land_in_fields_their_module_reads():
  used = _names_used(
    _parse(
      "\n".join(
        p.read_text()
        for d in ("sol_jax", "experiments")
        for p in (ROOT / d).rglob("*.py")
        if CONFIG_PKG not in p.parents
      )
    )
  )
  for section, (cls, module, builder) in FORWARDED.items():
    assert builder in used, f"nothing calls {cls.__name__}.{builder} for the {section} section"
    targets = {f.name for f in dataclasses.fields(cls)}
    module_attrs = {
      n.attr for n in ast.walk(_parse(module.read_text())) if isinstance(n, ast.Attribute)
    }
    for field in config_keys()[section]:
      assert field in targets, f"{section}.{field} has no {cls.__name__} field"
      assert field in module_attrs, f"{section}.{field}: {module.name} never reads .{field}"


def test_an_unread_key_is_reported_and_a_read_clears_it():
  keys = config_keys()
  keys["rl"] = keys["rl"] + ["dummy_unread_knob"]
  keys["mesh"] = keys["mesh"] + ["dummy_mesh_knob"]
  assert unread_keys(keys, collect_reads()) == ["rl.dummy_unread_knob", "mesh.dummy_mesh_knob"]
  # A read through an alias, an annotation, a `_cfg` name and an f-string getattr.
  reads = collect_reads(
    (
      "def f(cfg):\n  r = cfg.rl\n  return r.dummy_unread_knob\n",
      "def g(mesh_cfg):\n  return getattr(mesh_cfg, f'dummy_{1}_knob')\n",
    )
  )
  assert unread_keys(keys, reads) == []
  # A same-named attribute of something that is not the section does not count.
  other = collect_reads(("def h(model_config):\n  return model_config.dummy_unread_knob\n",))
  assert "rl.dummy_unread_knob" in unread_keys(keys, other)
