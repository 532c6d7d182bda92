"""Linear probes: targets from task metadata, activation features, scikit-learn fits, controls.

A probe reads one target (an operand digit, a carry, a running sum...) from one activation
site at one (layer, position), or (layer, head, position) for per-head sites. Every probe
is a scikit-learn Pipeline (StandardScaler, then LogisticRegression for classification or
Ridge for regression) fit on a train/test split BY PROBLEM: a problem's rows, repeats
included, all land on one side. Beside each probe's test scores sit its controls:

- ``shuffled``: the same probe fit on train labels permuted with a seeded generator;
- ``random_model``: the same probe on activations of a randomly initialised model of the
  same shape (``build_model`` with another seed);
- ``baseline``: the majority class (classification) or the train mean (regression).

``selectivity = score − shuffled`` for accuracy, balanced accuracy and R², and
``shuffled − score`` for MAE, so higher always means more information beyond the labels'
distribution. Probe weights are returned in the ORIGINAL activation space (the scaler is
folded in): ``logits = act @ coef.T + intercept``; a binary classifier has one row (the
logit of ``classes[1]``), a regressor one row.

By default a target is probed only at positions whose prefix already holds every operand
digit it depends on (``ProbeTarget.first_pos``); earlier positions can only score chance.

Modules, lowest first: `fit` (the split by problem and the fitting core on plain arrays),
`geometry` (principal components and direction cosines), `targets` (targets from task
metadata, and the problems to probe), `summary` (the best and first probe per target, the
running sums) and `sweep` (activation features from a model, `ProbeConfig` and `fit_probes`).
"""
