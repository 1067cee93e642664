"""The `hf` backend: Hugging Face inference through `huggingface_hub.InferenceClient`.

Configured by `HF_TOKEN`, `PERSONA_HF_MODEL` (a hub model id served by HF inference providers)
or a `base_url` (any text-generation-inference or OpenAI-compatible endpoint), and
`PERSONA_LLM_TIMEOUT` seconds (default 5). Streams `chat_completion` with a JSON-schema
`response_format` and parses it with `DirectiveStream`. Every failure becomes a key-free
`BackendError`. Knows nothing about the conversation or the offline fallback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from persona.backends.base import Backend, BackendError, ReplyChunk, ReplyRequest
from persona.backends.directive_stream import DIRECTIVE_SCHEMA, DirectiveStream

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_HF_MODEL = "HuggingFaceTB/SmolLM3-3B"
MAX_REPLY_TOKENS = 300


class HFBackend(Backend):
    name = "hf"

    def __init__(
        self,
        *,
        model: str | None = None,
        base_url: str | None = None,
        token: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        from huggingface_hub import InferenceClient

        self.base_url = base_url
        self.model = model or os.environ.get("PERSONA_HF_MODEL") or None
        if base_url is None and self.model is None:
            self.model = DEFAULT_HF_MODEL
        self.client = InferenceClient(
            model=None if base_url else self.model,
            base_url=base_url,
            token=token or os.environ.get("HF_TOKEN") or None,
            timeout=timeout_s or float(os.environ.get("PERSONA_LLM_TIMEOUT", DEFAULT_TIMEOUT_S)),
        )

    def check(self) -> None:
        """Offline mode and a missing token; it spends no inference call to find out."""
        from huggingface_hub import constants, get_token

        if constants.HF_HUB_OFFLINE:
            raise BackendError("HF_HUB_OFFLINE is set, so Hugging Face inference is off")
        if self.base_url is None and not (self.client.token or get_token()):
            raise BackendError("no HF_TOKEN is set (on a Space, add it as a secret)")

    def stream_reply(self, request: ReplyRequest) -> Iterator[ReplyChunk]:
        import httpx
        from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

        messages = request.chat_messages()
        parser = DirectiveStream()
        try:
            stream = self.client.chat_completion(
                messages,
                model=self.model,
                stream=True,
                max_tokens=MAX_REPLY_TOKENS,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "directive", "schema": DIRECTIVE_SCHEMA},
                },
            )
            for event in stream:
                if event.choices and event.choices[0].delta.content:
                    yield from parser.feed(event.choices[0].delta.content)
        except InferenceTimeoutError:
            raise BackendError("the Hugging Face model timed out") from None
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else "an error"
            raise BackendError(f"Hugging Face inference answered {status}") from None
        except (httpx.HTTPError, OSError, ValueError) as error:
            raise BackendError(f"Hugging Face inference failed ({type(error).__name__})") from None
        yield from parser.end()
