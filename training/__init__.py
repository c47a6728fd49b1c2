"""Training recipes for the embedded models (installed as ``namm_bench.training``).

They join an adapter's model with a suite's data (Decision Transformers on the RL datasets, the
video model's vision weights on generated videos), so they sit above both; their ``namm-bench``
subcommands are registered as entry points of group ``namm_bench.commands``.
"""
