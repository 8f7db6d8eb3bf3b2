"""A real, local OpenAI-compatible chat-completions server for tests and benchmarks.

    with FakeOpenAIServer(faults=Faults(rate=0.2)) as server:
        gen = OpenAIGenerator("teacher", base_url=server.url, ...)

It listens on 127.0.0.1 on a free port (http.server in a background thread: no
startup cost, stops at once) and answers POST /v1/chat/completions with a canned,
deterministic critique. Injectable trouble:
- `Faults`: a fraction of requests answered by 500, 429 (with Retry-After) or a
  stall longer than the client's timeout;
- a marker `[http NNN]` in the last user message: answered with that status;
- `reply(messages)` returning None: a 200 answer without text (`content: null`,
  finish_reason `content_filter`), as a filtered request gets;
- `delay_s`: every answer waits this long (the benchmark's fake model latency);
- `stop_after`: after that many successful answers the server dies: the listening
  socket closes and open connections are dropped (a crashed endpoint);
- `api_key`: requests without `Authorization: Bearer <key>` get 401, and with
  `echo_auth_in_errors` the 401 body repeats the header (a leaky server).
Counters (`served`, `requests`, `faults_served`, `max_in_flight`) are for assertions.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_MARKER = re.compile(r"\[http (\d{3})\]")


@dataclass(frozen=True)
class Faults:
    rate: float = 0.0  # fraction of requests that get a fault
    kinds: tuple[str, ...] = ("500", "429", "stall")
    seed: int = 0
    retry_after: str | None = None  # 429's Retry-After header (seconds or HTTP date)
    retry_after_ms: int | None = 20  # 429's retry-after-ms header (OpenAI's); None to omit
    stall_s: float = 3.0  # how long a stalled request hangs (longer than the client timeout)


def canned_critique(messages: list[dict]) -> str:
    """A deterministic critique that echoes the question and ends in the canonical verdict."""
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    question = user.split("\n\nSolution", 1)[0].removeprefix("Question: ")
    return (f"The question asks: {question[:200]}\n"
            "Each step of the solution follows from the previous one and the final answer is justified.\n"
            "Conclusion: right [END]")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: FakeOpenAIServer):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):
        self.owner._track(request, add=True)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.owner._track(request, add=False)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        pass  # clients hanging up on stalls are expected; keep test output clean


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server behind the SDK's pool
    # Headers and body go out as two writes; with Nagle on, the second waits for the
    # client's delayed ACK (~40 ms per request), which would swamp the benchmark.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        if owner.dead.is_set():
            self.close_connection = True  # drop it without a response: a crashed server
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        owner.bodies.append(body)
        owner._enter()
        try:
            self._answer(owner, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout): nothing to do
        finally:
            owner._leave()

    def _answer(self, owner: FakeOpenAIServer, body: dict) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"no route {self.path}", "not_found")
        if owner.api_key is not None and self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            seen = self.headers.get("Authorization", "") if owner.echo_auth_in_errors else "<hidden>"
            return self._error(401, f"Incorrect API key provided: {seen}", "invalid_api_key")
        messages = body.get("messages") or []
        user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        marker = _MARKER.search(user)
        if marker:
            owner._count_fault(marker.group(1))
            return self._error(int(marker.group(1)), f"forced status {marker.group(1)}", "forced")
        fault = owner._draw_fault()
        if fault == "500":
            return self._error(500, "internal error (injected)", "server_error")
        if fault == "429":
            headers = {}
            if owner.faults.retry_after is not None:
                headers["Retry-After"] = owner.faults.retry_after
            if owner.faults.retry_after_ms is not None:
                headers["retry-after-ms"] = str(owner.faults.retry_after_ms)
            return self._error(429, "rate limited (injected)", "rate_limit_exceeded", headers)
        if fault == "stall":
            owner.dead.wait(owner.faults.stall_s)
            self.close_connection = True
            return  # the client timed out long ago; hang up
        if owner.delay_s:
            owner.dead.wait(owner.delay_s)
        text = owner.reply(messages)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len(text.split()) if text else 0
        self._send(200, {
            "id": f"chatcmpl-{owner.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop" if text is not None else "content_filter"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })
        owner._served_one()

    def _error(self, status: int, message: str, code: str, headers: dict | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                                      "code": code}}, headers)

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


class FakeOpenAIServer:
    def __init__(self, *, faults: Faults | None = None, delay_s: float = 0.0, stop_after: int | None = None,
                 api_key: str | None = None, echo_auth_in_errors: bool = False, reply=canned_critique):
        self.faults = faults or Faults()
        self.delay_s = delay_s
        self.stop_after = stop_after
        self.api_key = api_key
        self.echo_auth_in_errors = echo_auth_in_errors
        self.reply = reply
        self.dead = threading.Event()  # set on stop: stalls end, new requests are dropped
        self.requests = 0  # requests that reached a handler
        self.served = 0  # 200 answers
        self.faults_served: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: deque[dict] = deque(maxlen=1000)  # the last request bodies, for assertions
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self.port: int | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "server not started"
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._httpd = _Server(self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection; idempotent and bounded."""
        self.dead.set()
        with self._lock:
            httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- bookkeeping called by handlers ------------------------------------------------

    def _track(self, sock, *, add: bool) -> None:
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)

    def _enter(self) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _draw_fault(self) -> str | None:
        with self._lock:
            if self._rng.random() >= self.faults.rate:
                return None
            kind = self._rng.choice(self.faults.kinds)
            self.faults_served[kind] += 1
            return kind

    def _count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults_served[kind] += 1

    def _served_one(self) -> None:
        with self._lock:
            self.served += 1
            crash = self.stop_after is not None and self.served >= self.stop_after
        if crash and not self.dead.is_set():
            self.dead.set()
            # shutdown() waits for serve_forever: never call it from a handler thread directly.
            threading.Thread(target=self.stop, name="fake-openai-crash", daemon=True).start()
