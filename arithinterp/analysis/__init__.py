"""Localization: patching, attribution, attention summaries, component ranking."""
