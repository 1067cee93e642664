"""A scriptable OpenAI-compatible chat server on 127.0.0.1, run in a thread by tests.

Serves `/v1/models` and streaming `/v1/chat/completions` (SSE) with a reply the test scripts,
or, given a `LocalChatModel`, with what that real model generates for the messages; and a
failure mode: an HTTP status, a slow first piece, a stream cut mid-way, or refusing
`response_format` with a 400. Records every request body and every reply it streamed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from tests.servers.local_model import LocalChatModel
from tests.servers.threaded import ThreadedServer

SCRIPTED_MODEL = "tiny-test-model"


@dataclass
class Script:
    reply: str = '{"action": "wave", "expression": "happy", "dialogue": "Hello there!"}'
    status: int = 200
    delay_s: float = 0.0
    cut_after: int | None = None
    refuse_response_format: bool = False
    piece: int = 4
    requests: list[dict] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)


class OpenAICompatibleServer(ThreadedServer):
    def __init__(self, model: LocalChatModel | None = None) -> None:
        self.script = Script()
        self.model = model
        self.model_name = model.name if model is not None else SCRIPTED_MODEL
        super().__init__()
        self.base_url = f"{self.origin}/v1"

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self._models),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
        ]

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": self.model_name, "object": "model", "created": 0, "owned_by": "test"}
                ],
            }
        )

    async def _chat(self, request: Request):  # type: ignore[no-untyped-def]
        body = await request.json()
        script = self.script
        script.requests.append(body)
        if script.refuse_response_format and "response_format" in body:
            return JSONResponse(
                {"error": {"message": "response_format is not supported"}}, status_code=400
            )
        if script.status != 200:
            return JSONResponse(
                {"error": {"message": "scripted failure"}}, status_code=script.status
            )

        def pieces() -> Iterator[str]:
            if self.model is not None:
                yield from self.model.stream(body["messages"], body.get("max_tokens"))
                return
            reply = script.reply
            yield from (reply[i : i + script.piece] for i in range(0, len(reply), script.piece))

        async def events():  # type: ignore[no-untyped-def]
            await asyncio.sleep(script.delay_s)
            streamed: list[str] = []
            async for piece in iterate_in_threadpool(pieces()):
                if script.cut_after is not None and len(streamed) >= script.cut_after:
                    yield "data: {broken"  # the connection drops mid-event
                    return
                streamed.append(piece)
                chunk = {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            script.replies.append("".join(streamed))
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
