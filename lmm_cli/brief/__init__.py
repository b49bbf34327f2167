"""Briefs: cited, budgeted markdown made from what addressing found."""
