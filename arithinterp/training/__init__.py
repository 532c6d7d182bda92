"""Training small transformers from scratch, reproducibly: a config names everything that
determines a run (seeds included), the loop trains it into a directory, and a run stopped
at step N/2 and resumed ends bitwise where a straight run of N steps does (on the CPU).

What varies between training modes is named in the config through registries (a curriculum,
extra losses), so a saved config replays it and a sweep can vary it; `TrainConfig.mode` names
the combination: ``sft`` (answer only), ``cot`` (full chain), ``icot`` (implicit chain of
thought) and ``aux`` (SFT + the running-sum loss).

Modules, lowest first:

- `plugins`: the registered curricula (``icot``, ``mix``) and extra losses
  (``running_sum``);
- `config`: `TrainConfig` and `with_mode`;
- `recipes`: the zoo's training configs and the grokking setup;
- `checkpoints`: the training directory on disk (checkpoints, resume, the splits a saved
  config names);
- `loop`: `train`, and the loss, schedule, batching and parameter groups fine-tuning shares.
"""
