"""Stages: one module per stage, each a `base.Stage` (a frozen config and ``run(config, run,
ctx) -> summary`` writing into one run directory); `registry` names them and `job` strings
them into jobs."""
