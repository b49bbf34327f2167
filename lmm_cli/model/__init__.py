"""Models: the sentence encoder that turns text into vectors (see ``encoder``)."""
