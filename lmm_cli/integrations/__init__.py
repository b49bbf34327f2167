"""Integrations: how lmm plugs into the tools around it — git hooks, and the assistants
(``claude``, ``codex``, ``cursor``, ``aider``; ``merge`` edits their files in place).

Each module knows one outside tool's files and formats (where its hooks or config live, how to add
lmm beside what is there and take it out again byte for byte). Nothing here calls the core."""
