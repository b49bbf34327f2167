"""Learning: replay of the repository's own history, the fits made on it (recall's fusion weights
now, adapters next) and the one rule that decides whether a fit replaces what is in use."""
