"""A real OpenAI-compatible chat server on 127.0.0.1 whose failures a test scripts: outages, 429 with Retry-After,
slow answers, malformed 200s, odd text. The openai client talks to it over real sockets, so retries, timeouts and
parsing are the client's own.

`behaviour(question, attempt)` decides each reply, where `attempt` counts the requests for that question so far
(1 for the first). Every request is logged in `requests` as (question, attempt, status). The server runs in daemon
threads and stops with `stop()` (the fixture calls it), or with the interpreter.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def answer(text: str) -> Reply:
    """A well-formed chat completion whose message is `text` (any code point, lone surrogates included)."""
    body = {"id": "chatcmpl-flaky", "object": "chat.completion", "created": 0, "model": "flaky",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}
    return Reply(body=json.dumps(body).encode())  # ASCII escapes carry a lone surrogate as valid JSON


def status(code: int, retry_after: float | None = None) -> Reply:
    """An HTTP error in OpenAI's error shape, optionally with Retry-After (seconds)."""
    body = json.dumps({"error": {"message": f"flaky server says {code}", "type": "server_error", "code": None}})
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    return Reply(status=code, body=body.encode(), headers=headers)


MALFORMED = {  # HTTP 200 bodies that are not a chat completion
    "truncated JSON": Reply(body=b'{"id": "chatcmpl-flaky", "choices": ['),
    "an HTML page": Reply(body=b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    "an empty body": Reply(body=b""),
    "no choices": Reply(body=json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "flaky",
                                         "choices": []}).encode()),
    "a null message": Reply(body=json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "flaky",
                                             "choices": [{"index": 0, "message": None,
                                                          "finish_reason": "stop"}]}).encode()),
}


class FlakyServer:
    def __init__(self, behaviour: Callable[[str, int], Reply] = lambda question, attempt: answer("SELECT 1")):
        self.behaviour = behaviour
        self.requests: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def questions(self) -> list[str]:
        """The question of every request received, in order."""
        return [question for question, _, _ in self.requests]

    def start(self) -> "FlakyServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _reply_for(self, question: str) -> Reply:
        with self._lock:
            attempt = 1 + sum(1 for q, _, _ in self.requests if q == question)
            reply = self.behaviour(question, attempt)
            self.requests.append((question, attempt, reply.status))
        return reply

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's spelling
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                question = next((m["content"] for m in reversed(request.get("messages", []))
                                 if m.get("role") == "user"), "")
                reply = server._reply_for(question)
                time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout): fine
                    pass

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        return Handler
