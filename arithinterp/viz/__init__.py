"""Plotly figure builders shared by the explorer and the notebooks, one module per domain.

Every builder takes tables (the tidy DataFrames a run stores) or tensors and returns a
``go.Figure`` (one, `attention.attention_tokens_html`, a self-contained HTML view); none
shows it. Shared colour scales, labels and the clickable heatmap live in `common`. The
package imports no compute code.
"""
