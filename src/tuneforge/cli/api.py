"""`tuneforge api CONFIG`: serve the model (+ adapter) over an OpenAI-compatible HTTP API.

Environment: API_HOST (default 127.0.0.1: only this machine can connect; set 0.0.0.0 to listen on
every interface), API_PORT (default 8000), API_KEY (when set, every route but /health needs
`Authorization: Bearer <key>`), API_MODEL_NAME (the model id clients see; default from the config),
and the limits API_MAX_BODY_BYTES, API_MAX_PROMPT_TOKENS, API_MAX_TOKENS, API_MAX_QUEUE,
API_DRAIN_SECONDS (see tuneforge.serve.limits). SIGTERM/SIGINT drain the server (serve/server.py).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from tuneforge.config.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def listen_address() -> tuple[str, int]:
    host = os.environ.get("API_HOST", "").strip() or DEFAULT_HOST
    raw = os.environ.get("API_PORT", "").strip() or str(DEFAULT_PORT)
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"API_PORT={raw!r} is not a port number (e.g. API_PORT=8000)") from None
    if not 0 < port < 65536:
        raise ConfigError(f"API_PORT={port} is out of range (1-65535)")
    return host, port


def check_free(host: str, port: int) -> None:
    """Fail in a second, before the model loads, when the address cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                              "set API_PORT to a free port or API_HOST to an address of this machine") from None


def default_model_name(cfg) -> str:
    """`org/model` for a hub id, the folder name for a local path; `+adapter` folder names appended."""
    base = cfg.model.model_name_or_path.rstrip("/")
    if Path(base).exists():
        base = Path(base).name
    adapters = [Path(a.rstrip("/")).name for a in cfg.model.adapter_name_or_path or []]
    return "+".join([base, *adapters])


def run_api(config_path: Path, overrides: list[str]) -> None:
    from tuneforge.cli.config import load_config

    cfg = load_config(config_path, ["do_train=false", *overrides])
    host, port = listen_address()
    try:
        from tuneforge.serve.api import create_app
        from tuneforge.serve.limits import Limits
        from tuneforge.serve.server import run_server
    except ImportError as exc:
        raise ConfigError(f"tuneforge api needs the api extra: pip install 'tuneforge[api]' ({exc.name} is "
                          "missing)") from None
    limits = Limits.from_env()
    check_free(host, port)
    api_key = os.environ.get("API_KEY") or None
    model_name = os.environ.get("API_MODEL_NAME", "").strip() or default_model_name(cfg)
    from tuneforge.infer.engine import create_engine

    engine = create_engine(cfg.model, cfg.data, cfg.generate, serving=True)
    try:  # the engine may run a generation thread: it is stopped however this ends
        app = create_app(engine, model_name, api_key, limits)
        shown = f"[{host}]" if ":" in host else host
        print(f"tuneforge: serving '{model_name}' at http://{shown}:{port}/v1 "
              f"({'API key required' if api_key else 'no API key'})", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
            print(f"tuneforge: warning: listening on {host} without API_KEY: anyone who can reach this port can "
                  "use the model", file=sys.stderr, flush=True)
        run_server(app, host, port, limits.drain_seconds, engine.close, os.environ.get("API_LOG_LEVEL", "info"))
    finally:
        engine.close()
