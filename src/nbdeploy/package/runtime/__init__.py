"""Standalone modules copied verbatim into every bento (they never import nbdeploy)."""
