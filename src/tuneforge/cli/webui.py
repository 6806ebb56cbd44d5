"""`tuneforge webui`: the browser UI (gradio, the `webui` extra). Gradio is imported here only, so the
other commands start as fast as before; its usage analytics are off and nothing is fetched from the
internet at start."""

from __future__ import annotations

import os

from tuneforge.config.errors import ConfigError


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """`user:pass` -> (user, pass); the password may itself hold colons."""
    if auth is None:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth must be user:password (both non-empty)")
    return user, password


def run_webui(host: str, port: int | None, auth: str | None, lang: str, root: str) -> None:
    credentials = parse_auth(auth)
    if lang not in ("en", "zh"):
        raise ConfigError(f"--lang must be en or zh, got {lang!r}")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    if host not in ("127.0.0.1", "localhost", "::1") and credentials is None:
        from tuneforge.log import note

        note(f"--host {host}: other machines can start runs on this one; set --auth user:password")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: it reads this once
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("the web UI needs gradio: pip install 'tuneforge[webui]'") from None
    from tuneforge.webui.app import launch

    launch(root, host, port, credentials, lang)
