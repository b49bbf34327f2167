"""Store: the per-repository SQLite episodic log and its migrations."""
