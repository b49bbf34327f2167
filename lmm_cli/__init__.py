"""lmm: a local long-term memory of one repository for terminal coding assistants."""

__version__ = "0.1.0"
