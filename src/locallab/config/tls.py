"""HTTPS settings checked before the server starts: a clear reason instead of a traceback from uvicorn."""

from __future__ import annotations

import ssl
from pathlib import Path


def _unreadable(kind: str, path: Path) -> str | None:
    if not path.exists():
        return f"{kind} {path} does not exist."
    if not path.is_file():
        return f"{kind} {path} is not a file."
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        return f"{kind} {path} cannot be read ({exc.strerror or exc}); check its owner and permissions."
    return None


def tls_problem(certfile: Path | None, keyfile: Path | None) -> str | None:
    """Why these HTTPS files cannot serve, or None (also None when HTTPS is off: both unset)."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        missing = "LOCALLAB_SSL_CERTFILE (--ssl-certfile)" if certfile is None else "LOCALLAB_SSL_KEYFILE"
        return f"HTTPS needs both a certificate and its key; {missing} is not set."
    for kind, path in (("the certificate", certfile), ("the key", keyfile)):
        problem = _unreadable(kind, path)
        if problem is not None:
            return problem
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # The same call uvicorn makes; here a bad file, or a key of another certificate, says so.
        context.load_cert_chain(str(certfile), str(keyfile), password=lambda: b"")
    except ssl.SSLError as exc:
        return (
            f"cannot use {certfile} with {keyfile} ({exc.reason or exc}): both must be PEM files, the key "
            "unencrypted and belonging to the certificate."
        )
    return None
