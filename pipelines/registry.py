"""The registry: every pipeline Persona knows, how to build it, and whether it can run here.

Entries are declarative and light: the pipeline class is imported only when built, so listing
pipelines never loads torch or a drawing library. An entry that cannot run here (no GPU, no
weights) is still listed, with the reason.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from pipelines.base import Pipeline
from pipelines.puppet import PuppetConfig
from pipelines.tiny_ar import TinyARConfig
from pipelines.wan import WanConfig, weights_missing

log = logging.getLogger(__name__)

DEFAULT_PIPELINE = "puppet"


GPU_DEVICE_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")
"""A GPU driver (NVIDIA, or ROCm's /dev/kfd) shows one of these; without any, torch is not asked."""


def needs_cuda() -> str | None:
    """None when a CUDA GPU is usable, else why not.

    Without a GPU driver this answers from the file system, so listing pipelines on a CPU
    machine does not import torch (about 2 s); with one, torch decides.
    """
    if not any(os.path.exists(path) for path in GPU_DEVICE_FILES):
        return "needs a CUDA GPU (no GPU driver found)"
    try:
        import torch
    except ImportError:
        return "needs torch with CUDA (torch is not installed)"
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (none found)"
    return None


@dataclass(frozen=True)
class PipelineEntry:
    name: str
    description: str
    target: str
    """"module:Class" of the Pipeline subclass, imported when built."""
    config: type[BaseModel]
    unavailable_reason: Callable[[], str | None] = lambda: None
    """None when it can run here, else a sentence saying why not."""
    gpus_per_stream: float = 0.0
    """GPUs one stream needs: what its actor declares on a Ray cluster (`pipelines.remote`)."""

    def availability(self) -> tuple[bool, str]:
        try:
            reason = self.unavailable_reason()
        except Exception as error:  # a broken check must not hide the pipeline
            reason = f"availability check failed: {error}"
        return reason is None, reason or "ready"


@dataclass(frozen=True)
class PipelineStatus:
    name: str
    description: str
    available: bool
    reason: str


class UnknownPipelineError(ValueError):
    pass


class PipelineUnavailableError(RuntimeError):
    pass


_ENTRIES: dict[str, PipelineEntry] = {}


def register(entry: PipelineEntry) -> None:
    if entry.name in _ENTRIES:
        raise ValueError(f"pipeline {entry.name!r} is already registered")
    _ENTRIES[entry.name] = entry


def get_entry(name: str) -> PipelineEntry:
    try:
        return _ENTRIES[name]
    except KeyError:
        known = ", ".join(sorted(_ENTRIES))
        raise UnknownPipelineError(f"unknown pipeline {name!r}; known: {known}") from None


def list_pipelines() -> list[PipelineStatus]:
    statuses = []
    for entry in _ENTRIES.values():
        available, reason = entry.availability()
        statuses.append(PipelineStatus(entry.name, entry.description, available, reason))
    return statuses


def default_pipeline_name() -> str:
    """`PERSONA_PIPELINE` if set (and known), else the CPU default."""
    name = os.environ.get("PERSONA_PIPELINE", "").strip() or DEFAULT_PIPELINE
    get_entry(name)
    return name


def build_pipeline(name: str, **config: object) -> Pipeline:
    """Validate the config, check the pipeline can run here, import and construct it."""
    entry = get_entry(name)
    try:
        validated = entry.config(**config)
    except ValidationError as error:
        raise ValueError(f"bad config for pipeline {name!r}: {error}") from None
    available, reason = entry.availability()
    if not available:
        raise PipelineUnavailableError(f"pipeline {name!r} cannot run here: {reason}")
    module_name, class_name = entry.target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    log.info("building pipeline %s with %s", name, validated)
    return cls(validated)


register(
    PipelineEntry(
        name="puppet",
        description="Procedural 2D character drawn with skia; real time on one CPU core.",
        target="pipelines.puppet.pipeline:PuppetPipeline",
        config=PuppetConfig,
    )
)


def _tiny_ar_unavailable() -> str | None:
    weights = TinyARConfig().weights
    if not os.path.exists(os.path.join(weights, "diffusion_pytorch_model.safetensors")):
        return f"its weights are missing from {weights} (retrain: pipelines/tiny_ar/train.py)"
    return None


register(
    PipelineEntry(
        name="tiny_ar",
        description="Autoregressive video diffusion model trained on the puppet; real time on 2 CPU cores.",
        target="pipelines.tiny_ar.pipeline:TinyARPipeline",
        config=TinyARConfig,
        unavailable_reason=_tiny_ar_unavailable,
    )
)


def _wan_unavailable() -> str | None:
    return needs_cuda() or weights_missing()


register(
    PipelineEntry(
        name="wan",
        description="Wan2.1-T2V-1.3B streamed block by block (LongLive / Self-Forcing weights, "
        "KV cache with prompt re-cache); GPU with about 20 GB.",
        target="pipelines.wan.pipeline:WanPipeline",
        config=WanConfig,
        unavailable_reason=_wan_unavailable,
        gpus_per_stream=1.0,
    )
)
