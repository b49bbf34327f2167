"""Assistant sessions: readers for Claude Code, Codex CLI and aider transcripts (``model`` is what they
produce), and ``ingest``, which turns this repository's sessions into episodes, incrementally."""
