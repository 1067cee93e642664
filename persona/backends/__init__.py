"""Interpreter backends by name, imported lazily so the offline default never loads an SDK.

`make_backend("embedded" | "offline" | "openai" | "hf" | "transformers", **options)`.
`default_backend_name()` is the brain the app and the command line start with: `PERSONA_BACKEND`,
else the embedded model where it is installed, else the offline interpreter.
"""

from __future__ import annotations

import importlib
import os

from persona.backends.base import Backend, BackendError

BACKENDS: dict[str, str] = {
    "embedded": "persona.backends.embedded:EmbeddedBackend",
    "offline": "persona.backends.offline:OfflineBackend",
    "openai": "persona.backends.openai_backend:OpenAIBackend",
    "hf": "persona.backends.hf_backend:HFBackend",
    "transformers": "persona.backends.transformers_backend:TransformersBackend",
}


def default_backend_name() -> str:
    from persona.backends.embedded import default_model_source

    return os.environ.get("PERSONA_BACKEND") or (
        "embedded" if default_model_source() else "offline"
    )


def make_backend(name: str, **options: object) -> Backend:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise BackendError(f"the {name} backend is not available here ({error})") from None
    return getattr(module, class_name)(**options)
