"""The app under uvicorn, with a bounded drain on SIGTERM / SIGINT.

uvicorn's own shutdown waits for every open connection without a bound, so a long generation kept a
stopped server alive. Here the first signal starts a drain instead: new requests get 503 (the socket
stays open so that clients get an answer, not a refused connection), the chat completions in flight
may finish for up to `drain_seconds`; the ones still running then end with a 503 (an error event in a
stream) and their generations are cancelled, uvicorn shuts down, and `on_exit` stops the engine; the
process exits with code 0. A second signal stops at once (uvicorn re-raises it: exit 143 for SIGTERM,
130 for SIGINT).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from tuneforge.log import note
from tuneforge.serve.limits import Traffic

FINAL_GRACE_SECONDS = 1.0  # after the drain: uvicorn's wait for connections before it cancels their tasks


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, traffic: Traffic, drain_seconds: float, on_force: Callable[[], None]):
        super().__init__(config)
        self.traffic, self.drain_seconds, self.on_force = traffic, drain_seconds, on_force
        self.deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.traffic.draining = True
        if self.deadline is None:
            self.deadline = time.monotonic() + self.drain_seconds
            note(f"{signal.Signals(sig).name}: finishing the {self.traffic.active} request(s) in flight for at most "
                 f"{self.drain_seconds:g} s; new requests get 503; send the signal again to stop now")
            return
        note(f"{signal.Signals(sig).name} again: stopping now")  # the second signal: no more waiting
        self.on_force()
        super().handle_exit(sig, frame)
        self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.deadline is not None and not self.should_exit:
            if self.traffic.active == 0:
                self.should_exit = True
            elif time.monotonic() >= self.deadline:
                note(f"drain time is up: ending the {self.traffic.active} request(s) still running with 503")
                self.traffic.closing.set()
                self.should_exit = True
        return await super().on_tick(counter)


def run_server(app: Any, host: str, port: int, drain_seconds: float, on_exit: Callable[[], None],
               log_level: str = "info") -> None:
    """Serve `app` (from `create_app`) until a signal and its drain end; `on_exit` runs in every case."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=FINAL_GRACE_SECONDS)
    server = DrainingServer(config, app.state.traffic, drain_seconds, on_force=on_exit)
    try:
        server.run()
    finally:
        on_exit()
