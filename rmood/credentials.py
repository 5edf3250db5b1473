"""Credentials (the Hub token, a judge's API key) come from the environment only: never from config, a rule
param, a command-line argument or a log line, and never in an error message."""

from __future__ import annotations

import os


class CredentialError(RuntimeError):
    """A credential a step needs is not set; the message names the variable, never a value."""


def from_env(variable: str, purpose: str, what: str) -> str:
    """The value of the environment variable `variable`, which `purpose` ("uploading m") needs as `what`."""
    value = os.environ.get(variable)
    if not value:
        raise CredentialError(f"{purpose} needs {variable} set; {what} is read from the environment only")
    return value


def redact(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` replaced by `***` (servers may echo what they were sent)."""
    return text.replace(secret, "***") if secret else text
