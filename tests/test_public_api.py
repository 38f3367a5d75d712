"""Each package's public API is deliberate: `__all__` exists, and every name in it imports."""

import importlib
import pathlib
import pkgutil
import subprocess
import sys
import types

import pytest

PACKAGES = (
  "sol_jax.config",
  "sol_jax.data",
  "sol_jax.efficiency",
  "sol_jax.evaluation",
  "sol_jax.models",
  "sol_jax.policy",
  "sol_jax.rl",
)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_import(name):
  package = importlib.import_module(name)
  public = getattr(package, "__all__", None)
  assert isinstance(public, list) and public, f"{name} has no __all__"
  assert len(set(public)) == len(public), f"{name}.__all__ lists a name twice"
  namespace = {}
  exec(f"from {name} import *", namespace)  # pylint: disable=exec-used
  assert not set(public) - set(namespace), f"{name}.__all__ names what it does not define"


@pytest.mark.parametrize("name", PACKAGES)
def test_exports_do_not_shadow_submodules(name):
  """A re-exported function named like its module would replace the module attribute,
  so `from package import module` would hand back the function."""
  package = importlib.import_module(name)
  for info in pkgutil.iter_modules(package.__path__):
    module = importlib.import_module(f"{name}.{info.name}")
    assert getattr(package, info.name) is module, f"{name}.{info.name} is not the module"


def test_top_level_import_stays_light():
  code = "import sys, sol_jax; print(sorted({'jax', 'flax', 'torch'} & set(sys.modules)))"
  root = pathlib.Path(__file__).resolve().parents[1]
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
  )
  assert out.stdout.strip() == "[]"


def test_public_api_types():
  """A few names users reach for, from the package they belong to."""
  from sol_jax import efficiency, evaluation, models, policy, rl  # pylint: disable=g-import-not-at-top

  assert isinstance(efficiency.flops, types.ModuleType)
  assert callable(models.load_model) and callable(models.load_tokenizer)
  assert evaluation.fixed_columns.__module__ == "sol_jax.evaluation.fixed"
  assert evaluation.random_columns.__module__ == "sol_jax.evaluation.random_schedules"
  assert evaluation.heuristic_columns.__module__ == "sol_jax.evaluation.providers"
  assert policy.PolicyAgent.__module__ == "sol_jax.policy.agent"
  assert callable(rl.train) and rl.Checkpoints.__module__ == "sol_jax.rl.checkpointing"
