"""arithinterp: a workbench for arithmetic circuits in transformers."""
