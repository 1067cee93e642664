"""Interpreter backends by name, imported lazily so the offline default never loads an SDK.

`make_backend("offline" | "openai" | "hf" | "transformers", **options)`.
"""

from __future__ import annotations

import importlib

from persona.backends.base import Backend, BackendError

BACKENDS: dict[str, str] = {
    "offline": "persona.backends.offline:OfflineBackend",
    "openai": "persona.backends.openai_backend:OpenAIBackend",
    "hf": "persona.backends.hf_backend:HFBackend",
    "transformers": "persona.backends.transformers_backend:TransformersBackend",
}
DEFAULT_BACKEND = "offline"


def make_backend(name: str, **options: object) -> Backend:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise BackendError(f"the {name} backend is not available here ({error})") from None
    return getattr(module, class_name)(**options)
