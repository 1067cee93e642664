"""The `openai` backend: any OpenAI-compatible chat endpoint (Ollama, llama.cpp, vLLM, hosted).

Configured by `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `PERSONA_LLM_MODEL` (else the first model
the server lists), `PERSONA_LLM_TIMEOUT` seconds to wait for the connection and each streamed
piece (default 5). Asks for JSON-schema structured output and, when the server refuses it (400),
falls back to the plain JSON instructions the system prompt already carries, remembering that
per instance. Every failure becomes a key-free `BackendError`, so the conversation answers
offline instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from persona.backends.base import Backend, BackendError, ReplyChunk, ReplyRequest
from persona.backends.directive_stream import DIRECTIVE_SCHEMA, DirectiveStream

DEFAULT_TIMEOUT_S = 5.0


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        import openai

        self._openai = openai
        self.client = openai.OpenAI(
            base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            timeout=timeout_s or float(os.environ.get("PERSONA_LLM_TIMEOUT", DEFAULT_TIMEOUT_S)),
            max_retries=0,
        )
        self.model = model or os.environ.get("PERSONA_LLM_MODEL") or None
        self.structured_output = True

    def check(self) -> None:
        """The server answers `/models` (and, with no model named, lists one to use)."""
        try:
            if self.model is None:
                self._model()
            else:
                self.client.models.list()
        except self._openai.APIConnectionError:
            url = self.client.base_url
            where = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
            raise BackendError(
                f"cannot reach the language model server at {where} (set OPENAI_BASE_URL)"
            ) from None
        except self._openai.APIStatusError as error:
            raise BackendError(f"the language model server answered {error.status_code}") from None

    def _model(self) -> str:
        if self.model is None:
            models = self.client.models.list().data
            if not models:
                raise BackendError("the server lists no models; set PERSONA_LLM_MODEL")
            self.model = models[0].id
        return self.model

    def _open_stream(self, messages: list[dict[str, str]]):  # type: ignore[no-untyped-def]
        options: dict[str, object] = {"model": self._model(), "messages": messages, "stream": True}
        if self.structured_output:
            try:
                return self.client.chat.completions.create(
                    **options,
                    response_format={
                        "type": "json_schema",
                        "json_schema": {
                            "name": "directive",
                            "schema": DIRECTIVE_SCHEMA,
                            "strict": True,
                        },
                    },
                )
            except self._openai.BadRequestError:
                self.structured_output = False  # this server: plain JSON instructions only
        return self.client.chat.completions.create(**options)

    def stream_reply(self, request: ReplyRequest) -> Iterator[ReplyChunk]:
        messages = request.chat_messages()
        parser = DirectiveStream()
        try:
            for event in self._open_stream(messages):
                if event.choices and event.choices[0].delta.content:
                    yield from parser.feed(event.choices[0].delta.content)
        except self._openai.APITimeoutError:
            raise BackendError("the language model timed out") from None
        except self._openai.APIConnectionError:
            raise BackendError("cannot reach the language model server") from None
        except self._openai.RateLimitError:
            raise BackendError("the language model is rate limited (429)") from None
        except self._openai.APIStatusError as error:
            raise BackendError(f"the language model server answered {error.status_code}") from None
        except self._openai.APIError as error:
            raise BackendError(
                f"the language model stream broke ({type(error).__name__})"
            ) from None
        yield from parser.end()
