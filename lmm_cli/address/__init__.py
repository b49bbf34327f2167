"""Addressing: given a task, rank what matters in the repository (files, symbols, commits, notes)."""
