"""Assistant sessions: readers for Claude Code, Codex CLI and aider transcripts (``model`` is what they produce)."""
