"""Command lines of the experiment scripts: `[CONFIG] [key=value ...]`.

The config is the only source of settings: every script reads a config file
(default `experiments.DEFAULT_CONFIG`) plus `section.field=value` overrides.
A script may add `--out PATH`; `--help` prints its docstring and the config
keys it reads, with their values in the given config.

Every script's `main` is wrapped in `main_entry`: a user error (bad config key
or value, missing file, data dir or policy) prints `error: <message>` and exits
with status 2; `--debug` (any script) or SOL_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import os
import pathlib
import re
import sys
import traceback
from typing import Callable, Mapping, NamedTuple, Optional, Sequence

import sol_jax
from experiments import DEFAULT_CONFIG
from sol_jax import config as config_lib
from sol_jax import data as data_lib
from sol_jax import run_paths

DEBUG_FLAG, DEBUG_ENV = "--debug", "SOL_DEBUG"
# The keys of every script that runs a trained policy at requested targets: which
# policy (shipped, or train.run_dir's latest checkpoint) and which targets
# (`evaluation.knob.requested_targets`: eval.knob along eval.knob_path, else eval.budgets).
POLICY_TARGET_KEYS = ("eval.policy", "eval.knob", "eval.knob_path", "eval.budgets", "train.run_dir")
# What the library raises for bad input (it uses KeyError for none of it).
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)
# Folders of our code (by file: a script run with -m is the module __main__).
_OUR_CODE = tuple(
  os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sol_jax, sys.modules[__name__])
)


def main_entry(main: Callable) -> Callable:
  """Wraps a script's `main(argv=None)`: user errors become `error: ...` and exit 2.

  A user error is one of USER_ERRORS raised by a `raise` statement in our own
  code; anything else (e.g. a ValueError from inside JAX or numpy) is a bug and
  keeps its traceback. `--debug` is dropped from argv before `main` sees it.
  """

  @functools.wraps(main)
  def wrapper(argv: Optional[Sequence[str]] = None):
    items = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in items or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    items = [a for a in items if a != DEBUG_FLAG]
    if debug:
      return main(items)
    try:
      return main(items)
    except KeyboardInterrupt:
      raise SystemExit(130) from None  # 128 + SIGINT, as a shell reports it
    except USER_ERRORS as e:
      if not _raised_by_us(e):
        raise
      print(f"error: {e}", file=sys.stderr)
      raise SystemExit(2) from None

  return wrapper


def _raised_by_us(exc: BaseException) -> bool:
  """Whether `exc` comes from a `raise` statement in sol_jax or experiments."""
  tb = exc.__traceback__
  if tb is None:
    return False
  while tb.tb_next is not None:
    tb = tb.tb_next
  if not os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_OUR_CODE):
    return False
  line = traceback.extract_tb(tb, limit=1)[-1].line or ""
  return line.startswith("raise")


def check_data(cfg: config_lib.ExperimentConfig, *names: str) -> None:
  """Raises now, not after a model loads, if a named dataset's files are missing."""
  for name in names:
    if name in data_lib.NAMED_DATASETS:  # file paths and Hub sources are checked on reading
      data_lib.dataset_files(name, cfg.data.data_dir)


class Command(NamedTuple):
  cfg: config_lib.ExperimentConfig
  config_args: tuple[str, ...]  # CONFIG and overrides as given, e.g. for a child process
  out: Optional[str]  # --out, or the script's default
  internal: dict[str, str]  # internal flags given (e.g. a benchmark's --child=MODE)


def parse(
  argv: Optional[Sequence[str]],
  doc: str,
  keys: Sequence[str],
  *,
  out: Optional[str] = None,
  has_out: bool = False,
  internal: Sequence[str] = (),
  moved: Mapping[str, str] = (),
  loader: Callable[..., config_lib.ExperimentConfig] = config_lib.config_from_argv,
) -> Command:
  """Splits argv into the config (+ overrides) and the few non-setting flags.

  keys: what --help lists: a section name ("sweep") or one key ("data.eval").
  out: the default of `--out` (with has_out, None means the script picks).
  internal: undocumented flags a script passes to its own child processes.
  moved: former flags -> the config key that replaced them (for the error).
  loader: (config args, default=) -> config, e.g. one that reads a run's config.yaml.
  """
  items = list(sys.argv[1:] if argv is None else argv)
  if "-h" in items or "--help" in items:
    print(help_text(doc, keys, [a for a in items if not _is_flag(a)]))
    raise SystemExit(0)
  config_args, flags = [], {}
  out_value, want_out = out, has_out or out is not None
  while items:
    item = items.pop(0)
    name, eq, value = item.partition("=")
    if name == "--out" and want_out:
      if not eq:
        if not items:
          raise ValueError("--out needs a path: --out PATH")
        value = items.pop(0)
      out_value = value
    elif name in internal:
      flags[name] = value
    elif item == DEBUG_FLAG:
      continue  # main_entry's flag, when parse is called without it
    elif _is_flag(item):
      raise ValueError(_flag_error(name, keys, moved, want_out))
    else:
      config_args.append(item)
  cfg = loader(config_args, default=DEFAULT_CONFIG)
  return Command(cfg, tuple(config_args), out_value, flags)


def _is_flag(item: str) -> bool:
  """`--x` or `--x=v`, but not `--section.field=v` (an override; its dashes are ignored)."""
  return item.startswith("-") and "." not in item.partition("=")[0]


def _flag_error(flag: str, keys: Sequence[str], moved: Mapping[str, str], has_out: bool) -> str:
  bare = flag.lstrip("-")
  if bare in moved:
    hint = f"; it is the config key {moved[bare]}"
  else:
    names = {f.split(".")[-1]: f for f in _key_list(keys)}
    close = difflib.get_close_matches(bare, list(names), n=1, cutoff=0.5)
    hint = f" (did you mean the config key {names[close[0]]}?)" if close else ""
  flags = "--out, --help and --debug" if has_out else "--help and --debug"
  return (
    f"{flag} is not an option{hint}. Settings are config keys given as section.field=value "
    f"after the optional CONFIG; the only flags are {flags}."
  )


def _key_list(keys: Sequence[str]) -> list[str]:
  """Expands section names to all their `section.field` keys."""
  defaults = config_lib.ExperimentConfig()
  out = []
  for key in keys:
    if "." in key:
      out.append(key)
    else:
      out += [f"{key}.{f.name}" for f in dataclasses.fields(getattr(defaults, key))]
  return out


def _field_notes(cls: type) -> dict[str, str]:
  """field -> the comment beside it (and the comment lines just above) in its class."""
  names = {f.name for f in dataclasses.fields(cls)}
  notes, above = {}, []
  for line in inspect.getsource(cls).splitlines():
    text = line.strip()
    if text.startswith("#"):
      above.append(text.lstrip("#").strip())
      continue
    match = re.match(r"(\w+):[^#]*(?:#\s*(.*))?$", text)
    if match and match.group(1) in names:
      notes[match.group(1)] = " ".join(above + [match.group(2) or ""]).strip()
    above = []
  return notes


def help_text(doc: str, keys: Sequence[str], config_args: Sequence[str] = ()) -> str:
  """The script's docstring, then each key with its value in the given config."""
  try:
    cfg = config_lib.config_from_argv(list(config_args), default=DEFAULT_CONFIG)
    named = config_args and "=" not in config_args[0]
    source = " ".join(list(config_args) if named else [DEFAULT_CONFIG, *config_args])
  except (ValueError, FileNotFoundError):
    cfg, source = config_lib.load_config(DEFAULT_CONFIG), DEFAULT_CONFIG
  lines = [doc.strip(), "", f"Config keys this script reads (values from {source}):"]
  for key in _key_list(keys):
    section, field = key.split(".")
    value = json.dumps(config_lib.config_to_dict(getattr(getattr(cfg, section), field)))
    note = _field_notes(type(getattr(cfg, section))).get(field, "")
    lines.append(f"  {key}={value}" + (f"    # {note}" if note else ""))
  lines += ["", f"An error prints one line; {DEBUG_FLAG} (or {DEBUG_ENV}=1) shows its traceback."]
  return "\n".join(lines)


def results_dir(out: Optional[str], folder, name: str) -> pathlib.Path:
  """Where a script writes its files: --out, else `folder/name` when `folder` is local.

  A run dir in a bucket (gs://...) keeps checkpoints; the figures, CSVs and event
  files of an evaluation go to a local runs/<run name>/<name> (copy them up if wanted).
  """
  if out:
    return pathlib.Path(out)
  if run_paths.is_uri(folder):
    local = pathlib.Path("runs") / pathlib.PurePosixPath(str(folder)).name / name
    print(f"note: {folder} is remote; writing results to {local} (or pass --out)")
    return local
  return pathlib.Path(folder) / name
