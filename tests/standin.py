"""A stand-in for the model APIs on loopback, so that a real Claude Code or Codex session runs
offline in a test: every request body is kept (what reached the model), and the answers are
scripted. Claude Code speaks the Anthropic Messages API (``POST /v1/messages``); Codex the OpenAI
Responses API (``POST /v1/responses``, a provider with ``wire_api = "responses"`` whose ``base_url``
is ``{url}/v1``).

Claude Code sends two kinds of requests: the main ones, which carry its tools, and side requests
without tools (a title for the session, a topic check). Side requests get a short plain text; main
requests get the script's next step: ``{"text": ...}`` ends the turn, ``{"tool": NAME, "input": {...}}``
calls a tool (Claude Code runs it for real and sends the result back). When the script runs out, the
turn ends with "Done.". Answers are streamed as server-sent events, as the real API does.

Codex's requests all carry tools; each gets the script's next step the same way: a text is an
assistant ``message`` output item, a tool step a ``function_call`` (Codex runs it and posts its
output back in the next request), and ``{"search": QUERY}`` Codex's own ``tool_search`` over the
tools it defers (MCP servers' tools): the next request carries what it found.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["StandIn", "standin"]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class StandIn:
    def __init__(self, script: list[dict[str, Any]] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []  # {"path", "body"} of every POST, in order
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def main_requests(self) -> list[dict[str, Any]]:
        """The bodies of the requests that carried tools: the conversation itself."""
        return [r["body"] for r in self.requests
                if r["path"].startswith("/v1/messages") and "count_tokens" not in r["path"] and r["body"].get("tools")]

    def responses_requests(self) -> list[dict[str, Any]]:
        """The bodies of Codex's requests (the Responses API)."""
        return [r["body"] for r in self.requests if r["path"].rstrip("/").endswith("/responses")]

    def _next(self) -> dict[str, Any]:
        with self.lock:
            return self.script.pop(0) if self.script else {"text": "Done."}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                self._json({"data": [], "has_more": False})

            def do_HEAD(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                with owner.lock:
                    owner.requests.append({"path": self.path, "body": body})
                if self.path.split("?")[0].rstrip("/").endswith("/responses"):
                    self._responses(owner._next())
                    return
                if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
                    self._json({"input_tokens": 10})
                    return
                step = owner._next() if body.get("tools") else {"text": "Session"}
                if not body.get("stream"):
                    content = ([{"type": "tool_use", "id": "toolu_x", "name": step["tool"], "input": step["input"]}]
                               if "tool" in step else [{"type": "text", "text": step["text"]}])
                    self._json({"id": "msg_x", "type": "message", "role": "assistant", "model": body.get("model", "x"),
                                "content": content, "stop_reason": "tool_use" if "tool" in step else "end_turn",
                                "usage": {"input_tokens": 1, "output_tokens": 1}})
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                n = len(owner.requests)
                out = [_sse("message_start", {"type": "message_start", "message": {
                    "id": f"msg_{n}", "type": "message", "role": "assistant", "model": body.get("model", "x"),
                    "content": [], "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 1}}})]
                if "tool" in step:
                    out += [
                        _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                            "type": "tool_use", "id": f"toolu_{n}", "name": step["tool"], "input": {}}}),
                        _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                            "type": "input_json_delta", "partial_json": json.dumps(step["input"])}}),
                    ]
                    stop = "tool_use"
                else:
                    out += [
                        _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                     "content_block": {"type": "text", "text": ""}}),
                        _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                     "delta": {"type": "text_delta", "text": step["text"]}}),
                    ]
                    stop = "end_turn"
                out += [
                    _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop},
                                           "usage": {"output_tokens": 5}}),
                    _sse("message_stop", {"type": "message_stop"}),
                ]
                for chunk in out:
                    self.wfile.write(chunk)
                self.wfile.flush()
                self.close_connection = True

            def _responses(self, step: dict[str, Any]) -> None:
                """A Responses API stream: created, one output item, completed."""
                n = len(owner.requests)
                if "search" in step:  # Codex's own tool search, over the tools it defers (MCP servers')
                    item: dict[str, Any] = {"type": "tool_search_call", "id": f"ts_{n}", "call_id": f"call_{n}",
                                            "execution": "client", "arguments": {"query": step["search"], "limit": 8}}
                elif "tool" in step:
                    item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}",
                            "name": step["tool"], "arguments": json.dumps(step["input"])}
                    if step.get("namespace"):
                        item["namespace"] = step["namespace"]
                else:
                    item = {"type": "message", "role": "assistant", "id": f"msg_{n}",
                            "content": [{"type": "output_text", "text": step["text"]}]}
                usage = {"input_tokens": 1, "input_tokens_details": None, "output_tokens": 1,
                         "output_tokens_details": None, "total_tokens": 2}
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                for ev in ({"type": "response.created", "response": {"id": f"resp_{n}"}},
                           {"type": "response.output_item.done", "item": item},
                           {"type": "response.completed", "response": {"id": f"resp_{n}", "usage": usage}}):
                    self.wfile.write(_sse(str(ev["type"]), ev))
                self.wfile.flush()
                self.close_connection = True

        return Handler


@contextmanager
def standin(script: list[dict[str, Any]] | None = None) -> Iterator[StandIn]:
    """A running stand-in on a free loopback port, stopped on exit."""
    s = StandIn(script)
    s.server = ThreadingHTTPServer(("127.0.0.1", 0), s.handler())
    t = threading.Thread(target=s.server.serve_forever, daemon=True)
    t.start()
    try:
        yield s
    finally:
        s.server.shutdown()
        s.server.server_close()
