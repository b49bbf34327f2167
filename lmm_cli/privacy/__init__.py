"""Privacy: what must never be stored or shown — secret detection and redaction, secret files, `.lmmignore`.

Used by every stage that writes or prints: capture, indexing, training data, and every output."""
