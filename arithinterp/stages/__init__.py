"""Stages: one module per stage, each a frozen config and ``run(config, run, ctx) -> summary``
writing into one run directory; `job` strings them into jobs (the demo, localize, probe)."""
