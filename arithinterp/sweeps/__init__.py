"""Sweeps: a grid (or list) of training configs, each trial a normal run, run on Ray or
serially, resumable, one table of results.

Modules, lowest first: `spec` (the `Sweep` and its trials, TOML spec files), `results` (the
results table, read from the trials' runs) and `run` (`run_sweep`: the trials on Ray or in
this process).

A `Sweep` is a base `TrainConfig` (optionally a zoo recipe with fields overridden), axes of
values for any of its fields (``seed``, ``n_train``, ``format``, ``d_model``,
``task.digits_a``, ...) and the stages that follow training in every trial (default: the
evaluation). Each trial is the job ``[train config, *stages]`` run into
``<runs>/<name>.<axis>-<value>...`` (`stages.job.run_job`), so every command and explorer
page works on it. The sweep's record is the run ``<name>-sweep``: its ``sweep/`` stage
holds ``trials.parquet`` (one row per trial: status, error, config hash, the varied values
and the metrics its stages recorded), rewritten as trials finish.

- Resumable: a trial whose run is complete with the same configs is skipped; an unfinished
  one resumes (training from its checkpoint, bitwise as if never stopped).
- Fault-isolated: a trial whose config is invalid (say ``n_heads = 3`` with ``d_model =
  128``), or that raises while running, is recorded as failed with its message; the
  others run. Errors in the spec itself (unknown field, empty axis, a value of the wrong
  type, two trials with one configuration) are refused before anything starts.
- Backends: ``ray`` (a local Ray with one CPU and one torch thread per trial, or an
  existing cluster by ``address``; the runs folder must then be on storage every node
  sees) and ``serial`` (the same trial function in this process). Trials are seeded and
  single-threaded, so both give bitwise-identical weights.

Spec files are TOML (`spec.load_spec`; see ``sweeps/*.toml``)::

    name = "formats"
    recipe = "add3-reversed"        # optional: start from a zoo recipe
    stages = ["evaluate"]           # or [stages.localize] tables of config fields
    [base]                          # TrainConfig fields (tables for task and model)
    max_steps = 800
    [grid]                          # every combination; or [[trials]] tables for a list
    format = ["plain", "reversed"]
    n_train = [500, 1000]
"""
