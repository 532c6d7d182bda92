"""Hand-made tables shared by the figure tests."""

import numpy as np
import pandas as pd

LABELS = ["<bos>", "a0", "+", "b0", "=", "c0", "c1", "<eos>"]


def patch_table(site="resid_pre", by_pos=True, heads=0, layers=2, n_pos=8, direction="denoise"):
    """A tidy patching grid like PatchResult.to_frame(): value = layer + pos/10 (+ head/100)."""
    rows = []
    for layer in range(layers):
        for head in (range(heads) if heads else [None]):
            for pos in (range(n_pos) if by_pos else [None]):
                v = layer + (pos or 0) / 10 + (head or 0) / 100
                rows.append({"site": site, "by_pos": by_pos, "layer": layer,
                             "head": np.nan if head is None else float(head),
                             "pos": np.nan if pos is None else float(pos),
                             "token": None if pos is None else LABELS[pos],
                             "component": f"L{layer}H{head}" if head is not None
                             else f"L{layer}.resid",
                             "value": v, "normalized": v / 2 - 0.5, "direction": direction,
                             "metric": "logit_diff(c1)"})
    return pd.DataFrame(rows)
