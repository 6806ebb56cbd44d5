"""Load on `tuneforge api`: concurrent streamed chat completions against the tiny model + identity adapter.

    python bench/api_load.py [--adapter DIR] [--streams 1,10,50] [--waves 3] [--max-tokens 64] [--term-streams 20]

Starts `python -m tuneforge api` as a subprocess on 127.0.0.1 (the tuneforge that PYTHONPATH selects: put
another checkout's `src` first to measure that revision with the same venv), waits for /health, then:
- for each count in `--streams` (default 1,10,50), `--waves` waves of that many concurrent streamed
  requests (greedy, `max_tokens`, usage included), all sent at once: latency p50/p99 (request sent -> [DONE]), first-token p50, throughput = completion tokens
  of the wave / the wave's wall time, failures (status != 200, an error event, or no [DONE]);
- the server's RSS (VmRSS) before the first wave and after the last one, and its peak (VmHWM);
- one request with a `--big-body-mb` MB body (client timeout 120 s): its status and how much the server's peak
  RSS grew;
- SIGTERM under load, on a second server (the big body may keep the first one busy): `--term-streams`
  streams are started, SIGTERM is sent as soon as one of them has its first token, and the script reports
  how many of them still completed and how long the process took to exit (SIGKILL after `--exit-cap`
  seconds, reported as "> cap").
Without --adapter the identity adapter is trained first (`tuneforge train`, about 30 s on 2 cores).
Timings depend on the machine and its load; compare revisions on one machine, alternating runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = ["你是谁", "Who are you?", "介绍一下你自己", "What is your name?", "你好", "Hello"]
TRAIN = {"model_name_or_path": "tuneforge/tiny", "stage": "sft", "do_train": True, "dataset": "identity",
         "identity_name": "Forge", "identity_author": "Tuneforge Lab", "template": "qwen3_nothink",
         "cutoff_len": 256, "per_device_train_batch_size": 4, "finetuning_type": "lora", "lora_rank": 16,
         "learning_rate": 5e-3, "num_train_epochs": 15, "save_strategy": "no", "report_to": "none",
         "overwrite_output_dir": True}


def write_yaml(path: Path, keys: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(keys, allow_unicode=True), encoding="utf-8")
    return path


def train_adapter(tmp: Path) -> Path:
    out = tmp / "identity"
    config = write_yaml(tmp / "train.yaml", {**TRAIN, "output_dir": str(out)})
    subprocess.run([sys.executable, "-m", "tuneforge", "train", str(config)], check=True, capture_output=True)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of the process, MiB (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def start_server(tmp: Path, adapter: Path, log_name: str) -> tuple[subprocess.Popen, str, Path]:
    config = write_yaml(tmp / "api.yaml", {"model_name_or_path": "tuneforge/tiny", "adapter_name_or_path": str(adapter),
                                           "template": "qwen3_nothink", "max_new_tokens": 512})
    port = free_port()
    env = {**os.environ, "API_PORT": str(port), "API_LOG_LEVEL": "warning"}
    for key in ("API_KEY", "API_HOST"):
        env.pop(key, None)
    log = tmp / log_name
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tuneforge", "api", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}", log


async def wait_healthy(client, url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if (await client.get(url + "/health", timeout=1)).status_code == 200:
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"the server did not answer /health in {timeout} s")


async def one_stream(client, url: str, question: str, max_tokens: int, first: asyncio.Event | None = None) -> dict:
    """One streamed request: latency, first-token time, completion tokens, ok."""
    body = {"model": "x", "messages": [{"role": "user", "content": question}], "stream": True, "temperature": 0,
            "max_tokens": max_tokens, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    result = {"ok": False, "latency": None, "first": None, "tokens": 0, "text": ""}
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                result["error"] = f"HTTP {response.status_code}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    result["ok"] = "error" not in result
                    break
                event = json.loads(data)
                if "error" in event:
                    result["error"] = event["error"].get("message")
                    continue
                if event.get("usage"):
                    result["tokens"] = event["usage"]["completion_tokens"]
                for choice in event.get("choices") or []:
                    if choice["delta"].get("content"):
                        result["text"] += choice["delta"]["content"]
                        if result["first"] is None:
                            result["first"] = time.perf_counter() - started
                            if first is not None:
                                first.set()
    except Exception as exc:  # noqa: BLE001 - counted as a failure
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["latency"] = time.perf_counter() - started
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def wave(client, url: str, streams: int, max_tokens: int) -> dict:
    started = time.perf_counter()
    results = await asyncio.gather(*(one_stream(client, url, QUESTIONS[i % len(QUESTIONS)], max_tokens)
                                     for i in range(streams)))
    wall = time.perf_counter() - started
    good = [r for r in results if r["ok"]]
    latencies = [r["latency"] for r in good] or [float("nan")]
    firsts = [r["first"] for r in good if r["first"] is not None] or [float("nan")]
    tokens = sum(r["tokens"] for r in good)
    errors = sorted({r.get("error") or "no [DONE]" for r in results if not r["ok"]})
    return {"streams": streams, "wall": wall, "p50": statistics.median(latencies), "p99": percentile(latencies, 99),
            "first_p50": statistics.median(firsts), "tokens": tokens, "tok_s": tokens / wall,
            "failures": len(results) - len(good), "errors": errors}


async def sigterm_under_load(client, proc: subprocess.Popen, url: str, streams: int, max_tokens: int,
                             cap: float) -> dict:
    """Start `streams` requests, SIGTERM once the first token of any arrived; how many finish, how long the exit
    takes."""
    first = asyncio.Event()
    tasks = [asyncio.create_task(one_stream(client, url, QUESTIONS[i % len(QUESTIONS)], max_tokens, first))
             for i in range(streams)]
    try:
        await asyncio.wait_for(first.wait(), 120)
    except TimeoutError:
        print("no first token within 120 s: SIGTERM anyway", flush=True)
    signalled = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    while proc.poll() is None and time.perf_counter() - signalled < cap:
        await asyncio.sleep(0.05)
    exit_s = time.perf_counter() - signalled
    killed = proc.poll() is None
    if killed:
        proc.kill()
        proc.wait()
    results = await asyncio.gather(*tasks)
    return {"exit_s": exit_s, "killed": killed, "code": proc.returncode, "completed": sum(r["ok"] for r in results),
            "in_flight": streams}


async def big_body(client, url: str, pid: int, megabytes: int, opts_timeout: float = 120) -> dict:
    """One request whose user message is `megabytes` MB of text: the status and how much the server's peak RSS
    grew."""
    peak = memory_mib(pid)["VmHWM"]
    body = json.dumps({"messages": [{"role": "user", "content": "好" * (megabytes * 1024 * 1024 // 3)}],
                       "max_tokens": 8}, ensure_ascii=False).encode()
    started = time.perf_counter()
    try:
        status = str((await client.post(url + "/v1/chat/completions", content=body, timeout=opts_timeout)).status_code)
    except Exception as exc:  # noqa: BLE001 - reported as it is
        status = type(exc).__name__
    return {"status": status, "seconds": time.perf_counter() - started, "mb": len(body) / 1e6,
            "growth": memory_mib(pid)["VmHWM"] - peak}


async def run(opts: argparse.Namespace, tmp: Path) -> None:
    import httpx2

    adapter = Path(opts.adapter) if opts.adapter else train_adapter(tmp)
    counts = [int(n) for n in opts.streams.split(",")]
    limits = httpx2.Limits(max_connections=max(counts) + 10, max_keepalive_connections=max(counts) + 10)
    async with httpx2.AsyncClient(timeout=600, limits=limits) as client:
        proc, url, log = start_server(tmp, adapter, "server.log")
        try:
            await wait_healthy(client, url, proc, log)
            await one_stream(client, url, QUESTIONS[0], opts.max_tokens)  # warm-up
            before = memory_mib(proc.pid)
            waves = [await wave(client, url, n, opts.max_tokens) for n in counts for _ in range(opts.waves)]
            after = memory_mib(proc.pid)
            big = await big_body(client, url, proc.pid, opts.big_body_mb) if opts.big_body_mb else None
        finally:
            proc.kill()
            proc.wait()
        proc, url, log = start_server(tmp, adapter, "server-term.log")  # a fresh one: the body may keep it busy
        try:
            await wait_healthy(client, url, proc, log)
            await one_stream(client, url, QUESTIONS[0], opts.max_tokens)
            term = await sigterm_under_load(client, proc, url, opts.term_streams, opts.max_tokens, opts.exit_cap)
        finally:
            if proc.poll() is None:
                proc.kill()
    report(opts, waves, before, after, big, term)


def report(opts: argparse.Namespace, waves: list[dict], before: dict, after: dict, big: dict | None,
           term: dict) -> None:
    print(f"concurrent streams ({opts.streams}) x {opts.waves} waves each, greedy, max_tokens {opts.max_tokens}")
    print("| streams | wave | wall s | p50 s | p99 s | first token p50 s | completion tokens | tokens/s | failures |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for i, w in enumerate(waves):
        print(f"| {w['streams']} | {i % opts.waves + 1} | {w['wall']:.2f} | {w['p50']:.2f} | {w['p99']:.2f} | {w['first_p50']:.2f} | {w['tokens']} "
              f"| {w['tok_s']:.0f} | {w['failures']} |")
        for error in w["errors"]:
            print(f"  failure: {error}")
    print(f"server RSS MiB: before {before['VmRSS']:.0f}, after {after['VmRSS']:.0f}, peak {after['VmHWM']:.0f}")
    if big:
        print(f"a {big['mb']:.1f} MB body: {big['status']} after {big['seconds']:.2f} s, server peak RSS "
              f"+{big['growth']:.0f} MiB")
    exit_text = f"> {opts.exit_cap:.0f} s (SIGKILL)" if term["killed"] else f"{term['exit_s']:.2f} s"
    print(f"SIGTERM with {term['in_flight']} streams in flight: exited after {exit_text} (code {term['code']}), "
          f"{term['completed']}/{term['in_flight']} streams completed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", help="identity adapter folder (trained here when missing)")
    parser.add_argument("--streams", default="1,10,50", help="concurrent streams per wave, comma-separated counts")
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--term-streams", type=int, default=20)
    parser.add_argument("--big-body-mb", type=int, default=10, help="one request this big (0: none)")
    parser.add_argument("--exit-cap", type=float, default=120.0, help="seconds before SIGKILL after SIGTERM")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="api-load-") as tmp:
        asyncio.run(run(opts, Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
