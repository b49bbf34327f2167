"""Capture: turn a repository's life (git history, hooks, notes) into episodes, redacted."""
