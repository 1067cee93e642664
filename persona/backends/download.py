"""A hub model downloaded once in the background, with progress the page can show.

A Space installs requirements.txt only, so the embedded brain's model comes from the hub there
(`embedded.ONLINE_MODEL`, ~720 MB): minutes that must not hold up the page. The download runs
on a thread of its own while the interpreter answers, and its progress is read off the disk
(the bytes in the repository's cache folder against the sizes the hub lists), which holds for
plain and Xet transfers alike and needs nothing from huggingface_hub's progress bars.
Knows nothing about chat or the UI.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
"""What a transformers chat model needs: config, weights, tokenizer. Not ONNX or GGUF copies."""
RETRY_AFTER_SECONDS = 30.0
"""A failed download is tried again on the next request after this long, not at once."""
DISK_READ_SECONDS = 0.1
"""How fresh a download's byte count is: one read of the cache folder serves every asker."""


@dataclass(frozen=True)
class Progress:
    repo_id: str
    done_bytes: int
    total_bytes: int | None
    """None until the hub has said how large the files are."""
    folder: str | None
    """The downloaded snapshot, once complete."""
    error: str | None

    def describe(self) -> str:
        """One line for the page, e.g. `downloading SmolLM2-360M-Instruct: 45% of 724 MB`."""
        name = self.repo_id.rsplit("/", 1)[-1]
        if self.error:
            return f"could not download {name}: {self.error}"
        if self.folder:
            return f"{name} downloaded"
        if not self.total_bytes:
            return f"downloading {name}: starting"
        percent = min(99, int(100 * self.done_bytes / self.total_bytes))
        size = self.total_bytes / 1e6
        return f"downloading {name}: {percent}% of {size:.{1 if size < 10 else 0}f} MB"


class HubDownload:
    """One repository's model files fetched into the hub cache on a background thread."""

    def __init__(self, repo_id: str) -> None:
        self.repo_id = repo_id
        self.started = time.monotonic()
        self._total: int | None = None
        self._folder: str | None = None
        self._disk_read: tuple[float, int] = (float("-inf"), 0)
        self._error: str | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, name="hub-download", daemon=True).start()

    def _run(self) -> None:
        from huggingface_hub import snapshot_download

        try:  # complete in the cache already (a restart, or offline): no network at all
            self._folder = snapshot_download(
                self.repo_id, allow_patterns=MODEL_FILES, local_files_only=True
            )
            self._done.set()
            return
        except Exception:  # not there, or only in part
            pass
        try:
            listed = snapshot_download(self.repo_id, allow_patterns=MODEL_FILES, dry_run=True)
            self._total = sum(f.file_size or 0 for f in listed)  # type: ignore[union-attr]
            log.info("downloading %s (%.0f MB)", self.repo_id, self._total / 1e6)
            self._folder = snapshot_download(self.repo_id, allow_patterns=MODEL_FILES)
        except Exception as error:  # no network, no such repository, a full disk: say which
            self._error = _reason(error)
            log.warning("could not download %s: %s", self.repo_id, self._error)
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the download ends (True), or `timeout` passes (False)."""
        return self._done.wait(timeout)

    def progress(self) -> Progress:
        done = self._done.is_set()
        return Progress(
            repo_id=self.repo_id,
            done_bytes=(self._total or 0) if self._folder else self._bytes_on_disk(),
            total_bytes=self._total,
            folder=self._folder if done else None,
            error=self._error if done else None,
        )

    def _bytes_on_disk(self) -> int:
        """The repository's blobs in the cache, finished and under way (`.incomplete`), read
        from disk at most every DISK_READ_SECONDS however many streams' status lines ask (each
        stream checks its status at every frame)."""
        read_at, size = self._disk_read
        now = time.monotonic()
        if now - read_at >= DISK_READ_SECONDS:
            self._disk_read = (now, size := self._read_bytes_on_disk())
        return size

    def _read_bytes_on_disk(self) -> int:
        from huggingface_hub import constants
        from huggingface_hub.file_download import repo_folder_name

        blobs = (
            Path(constants.HF_HUB_CACHE)
            / repo_folder_name(repo_id=self.repo_id, repo_type="model")
            / "blobs"
        )
        try:
            return sum(f.stat().st_size for f in blobs.iterdir() if f.is_file())
        except OSError:  # not created yet, or a file renamed as we looked
            return 0


def _reason(error: Exception) -> str:
    """The first line of the error, which names the cause (huggingface_hub adds advice)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


_downloads: dict[str, HubDownload] = {}
_downloads_lock = threading.Lock()


def hub_download(repo_id: str) -> HubDownload:
    """The download of `repo_id`, started on first use; one that failed is started again
    once RETRY_AFTER_SECONDS have passed (the network may be back)."""
    with _downloads_lock:
        download = _downloads.get(repo_id)
        failed = download is not None and download.progress().error is not None
        if download is None or (
            failed and time.monotonic() - download.started > RETRY_AFTER_SECONDS
        ):
            _downloads[repo_id] = download = HubDownload(repo_id)
        return download


def downloads_under_way() -> list[Progress]:
    """Every download not yet complete (failed ones included, with their error)."""
    with _downloads_lock:
        downloads = list(_downloads.values())
    return [p for d in downloads if (p := d.progress()).folder is None]
