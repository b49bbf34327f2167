"""Embedding: the sentence encoder that turns text into vectors (the frozen base model; the query
adapter that ``model`` trains is applied on top of it here)."""
