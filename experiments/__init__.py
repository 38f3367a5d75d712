"""Experiment scripts (python -m experiments.<name>)."""

# The config every script loads when its command line starts with an override
# (or is empty): the CPU-sized SmolLM2 variant.
DEFAULT_CONFIG = "smollm2_3L_cpu"
