"""Where the Wan weights come from, and getting them onto this machine (or saying why not).

Weights are fetched with `huggingface_hub` into the shared Hugging Face cache (tqdm progress
bars while downloading; nothing is copied elsewhere), so a second run, or a run with
`HF_HUB_OFFLINE=1`, finds them there. A local directory can stand in for any repo. Anything
that cannot be had raises `WeightsUnavailable`, naming the repo and files and how to get them,
instead of a hub error several layers down. This module knows repo ids and file names, not
what is inside the files: the VAE, text encoder and transformer modules load them.

Repo and file names, and where they were checked:
- `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`, folders `vae/`, `text_encoder/`, `tokenizer/`: the
  diffusers layout WanPipeline loads (example docstring of diffusers 0.42
  `pipelines/wan/pipeline_wan.py`: "Available models: ... Wan-AI/Wan2.1-T2V-1.3B-Diffusers").
- `gdhe17/Self-Forcing`, `checkpoints/self_forcing_dmd.pt`: Self-Forcing's README,
  `huggingface-cli download gdhe17/Self-Forcing checkpoints/self_forcing_dmd.pt --local-dir .`
  (github.com/guandeh17/Self-Forcing); the file holds only `generator_ema` weights.
- `Efficient-Large-Model/LongLive-1.3B`, `models/longlive_base.pt` + `models/lora.pt` (LoRA
  rank 256, alpha 256): NVlabs/LongLive v1.0 configs (`generator_ckpt:
  longlive_models/models/longlive_base.pt`, `lora_ckpt: longlive_models/models/lora.pt`) after
  `huggingface-cli download Efficient-Large-Model/LongLive-1.3B --local-dir longlive_models`.
- Tiny decoder `taew2_1.safetensors`: published by madebyollin in github.com/madebyollin/taehv
  (`safetensors/taew2_1.safetensors`, not on the hub); the hub copy used here is
  `Kijai/WanVideo_comfy` (as ComfyUI loaders fetch it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

WAN_BASE_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
WAN_BASE_PARTS: tuple[str, ...] = ("vae", "text_encoder", "tokenizer")
"""The diffusers folders the streaming pipeline needs; the bidirectional transformer is not."""


@dataclass(frozen=True)
class HubFiles:
    """Named files in one hub repo."""

    name: str
    repo: str
    files: tuple[str, ...]


SELF_FORCING = HubFiles(
    "Self-Forcing DMD", "gdhe17/Self-Forcing", ("checkpoints/self_forcing_dmd.pt",)
)
LONGLIVE = HubFiles(
    "LongLive-1.3B",
    "Efficient-Large-Model/LongLive-1.3B",
    ("models/longlive_base.pt", "models/lora.pt"),
)
TINY_DECODER = HubFiles("TAEHV taew2_1", "Kijai/WanVideo_comfy", ("taew2_1.safetensors",))


class WeightsUnavailable(RuntimeError):
    """Weights a pipeline needs are not on this machine and cannot be downloaded now."""


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (HF_HUB_OFFLINE, read when it was imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def fetch_wan_base(
    source: str | Path | None = None,
    *,
    parts: tuple[str, ...] = WAN_BASE_PARTS,
    offline: bool | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
) -> Path:
    """A directory holding the Wan2.1 diffusers `parts` (folders `vae/`, `text_encoder/`, ...).

    `source` is a local directory in that layout, or a hub repo id (default WAN_BASE_REPO)
    downloaded into the Hugging Face cache. `offline` defaults to HF_HUB_OFFLINE: then only the
    cache is looked at.
    """
    repo = str(source) if source is not None else WAN_BASE_REPO
    local = Path(repo).expanduser()
    if local.is_dir():
        _require_parts(local, parts, what=f"local Wan directory {local}")
        return local
    offline = hub_offline() if offline is None else offline
    from huggingface_hub import snapshot_download

    patterns = [f"{part}/*" for part in parts]
    logger.info("fetching %s (%s) from the hub cache%s", repo, ", ".join(parts), _mode(offline))
    try:
        folder = snapshot_download(
            repo,
            allow_patterns=patterns,
            revision=revision,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            local_files_only=offline,
        )
    except _hub_errors() as error:
        raise WeightsUnavailable(
            _explain(
                "Wan2.1 base weights",
                repo,
                parts,
                download_args="--include " + " ".join(f'"{p}"' for p in patterns),
                offline=offline,
                error=error,
            )
        ) from error
    root = Path(folder)
    _require_parts(root, parts, what=f"hub repo {repo}")
    return root


def fetch_files(
    files: HubFiles,
    *,
    local_dir: str | Path | None = None,
    offline: bool | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
) -> dict[str, Path]:
    """Paths of `files.files` (keyed by their name in the repo), one download each if needed.

    With `local_dir`, each file is looked for there at its repo path (`hf download --local-dir`
    layout) or by its bare name, and the hub is not asked.
    """
    if local_dir is not None:
        return {name: _local_file(Path(local_dir), name, files) for name in files.files}
    offline = hub_offline() if offline is None else offline
    from huggingface_hub import hf_hub_download

    found: dict[str, Path] = {}
    for name in files.files:
        logger.info("fetching %s/%s from the hub cache%s", files.repo, name, _mode(offline))
        try:
            found[name] = Path(
                hf_hub_download(
                    files.repo,
                    name,
                    revision=revision,
                    cache_dir=str(cache_dir) if cache_dir is not None else None,
                    local_files_only=offline,
                )
            )
        except _hub_errors() as error:
            raise WeightsUnavailable(
                _explain(
                    files.name,
                    files.repo,
                    files.files,
                    download_args=" ".join(files.files),
                    offline=offline,
                    error=error,
                )
            ) from error
    return found


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    # LocalEntryNotFoundError (offline or no network, not cached) is an EntryNotFoundError;
    # missing, gated and private repos are HfHubHTTPErrors; disk trouble is an OSError.
    return (EntryNotFoundError, HfHubHTTPError, OSError)


def _mode(offline: bool) -> str:
    return " only (offline)" if offline else ", downloading what is missing"


def _explain(
    what: str,
    repo: str,
    files: tuple[str, ...],
    *,
    download_args: str,
    offline: bool,
    error: BaseException,
) -> str:
    listed = " ".join(files)
    reason = (
        "offline mode is on (HF_HUB_OFFLINE=1) and they are not in the Hugging Face cache"
        if offline
        else f"the hub did not provide them ({type(error).__name__}: {error})"
    )
    return (
        f"{what} are unavailable: {repo} ({listed}): {reason}. "
        f"To fix: on a machine with network access and HF_HUB_OFFLINE unset, run "
        f"`hf download {repo} {download_args}` (it fills the cache this reads, honouring HF_HOME / "
        f"HF_HUB_CACHE), or pass a local directory that holds {listed}."
    )


def _require_parts(root: Path, parts: tuple[str, ...], *, what: str) -> None:
    missing = [part for part in parts if not (root / part).is_dir()]
    if missing:
        raise WeightsUnavailable(
            f"{what} lacks the folder(s) {', '.join(missing)} of the Wan diffusers layout "
            f"(expected {', '.join(parts)}). To fix: `hf download {WAN_BASE_REPO} "
            f"--include {' '.join(f'{p}/*' for p in missing)}` or point at a complete copy."
        )


def _local_file(root: Path, name: str, files: HubFiles) -> Path:
    for candidate in (root / name, root / Path(name).name):
        if candidate.is_file():
            return candidate
    raise WeightsUnavailable(
        f"{files.name} file {name} is not in {root} (looked for {root / name} and "
        f"{root / Path(name).name}). To fix: `hf download {files.repo} {name} --local-dir {root}`."
    )
