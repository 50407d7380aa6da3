"""Serve: local model-server processes, the stable endpoint, traffic split and rollback."""
