"""Secret files: recognised by name, recorded by name only, never read."""

from __future__ import annotations

import fnmatch
import re

__all__ = ["is_secret_file"]

# --------------------------------------------------------------------------
# Secret files (recorded by name only)
# --------------------------------------------------------------------------

# Basename globs, lower-case. ``.env.example`` and friends are included on
# purpose: templates often end up holding real values, and all we lose by
# treating them as secret is their content in memory, not their existence.
_SECRET_FILE_GLOBS: tuple[str, ...] = (
    # dotenv and direnv
    ".env", ".env.*", "*.env", ".envrc",
    # key material and keystores
    "*.pem", "*.key", "*.p12", "*.pfx", "*.p8", "*.jks", "*.keystore", "*.bks",
    "*.kdbx", "*.ppk", "*.keytab",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    # credential stores of common tools
    ".netrc", "_netrc", ".git-credentials", ".pypirc", ".npmrc", ".yarnrc.yml", ".pgpass",
    ".my.cnf", ".htpasswd", ".dockercfg", ".vault-token", ".terraformrc", "terraform.rc",
    ".s3cfg", ".boto", ".gem-credentials", "kubeconfig", "*.kubeconfig",
    "credentials", "credentials.json", "credentials.yml", "credentials.yaml",
    "credentials.csv", "credentials.xml", "credentials.toml", "credentials.ini",
    "client_secret*.json", "service-account*.json", "service_account*.json",
    "*-service-account.json", "*_service_account.json",
    # infrastructure state and variables (Terraform state holds secrets in clear)
    "*.tfvars", "*.tfvars.json", "*.auto.tfvars", "*.tfstate", "*.tfstate.*",
    # secrets files by name
    "secrets.yml", "secrets.yaml", "secrets.json", "secrets.toml", "secrets.env",
    "secrets.ini", "secret.yml", "secret.yaml", "secret.json", "*.secret", "*.secrets",
)
_SECRET_FILE_RE = re.compile(
    "|".join(f"(?:{fnmatch.translate(g)})" for g in _SECRET_FILE_GLOBS)
)


def is_secret_file(path: str) -> bool:
    """True when the file's basename marks it as holding secrets.

    Matches the basename in any directory, case-insensitively; ``/`` and ``\\``
    both separate directories. Public halves (``*.pub``) are never secret.
    """
    base = path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    if not base or base.endswith(".pub"):
        return False
    return _SECRET_FILE_RE.match(base) is not None
