"""Privacy: what must never be stored or shown — secret detection and redaction, secret files, `.lmmignore`.

Used by every stage that writes or prints: capture, indexing, training data, and every output.
``redact`` holds the scanner (``rules`` the table, with ``RULES_VERSION``), ``output`` the last pass
before text leaves lmm or feeds a model (``clean_output``, ``clean_data``, ``training_text``)."""
