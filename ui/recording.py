"""Recording what the visitor sees and hears into an MP4 (H.264 video, AAC sound, with PyAV).

The visitor's media connection (ui/media.py) hands each frame and each 20 ms of sound here as
it sends them, stamped with the session's clock. Encoding runs on a thread of its own so the
stream never waits for the encoder; if the encoder falls behind, frames are dropped (the file
holds the one before a little longer) rather than the stream slowed. A recording stops itself
at RECORDING_MAX_SECONDS. Files live in gradio's upload folder (so they are served without a
copy, at an unguessable path given only to their visitor), one folder per recording, deleted
when the visitor records again or leaves; a new recording is refused while all recordings
together hold RECORDINGS_MAX_BYTES. Knows nothing of sessions or the page.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from gradio.utils import get_upload_folder

log = logging.getLogger(__name__)

RECORDING_MAX_SECONDS = 300.0
RECORDINGS_MAX_BYTES = 2 * 2**30
"""All recordings on the server together (a 5-minute recording of the puppet is ~10 MB)."""
VIDEO_FPS = 30
QUEUED_ITEMS = 120
"""Frames and sound slices waiting for the encoder (about 2 s); past this, frames are dropped."""
X264_OPTIONS = {"preset": "veryfast", "crf": "23"}
"""Fast enough to cost the stream little on a busy CPU; crisp at 512x512."""


class RecordingError(RuntimeError):
    """A recording cannot start; the message says why, in words for the visitor."""


def recordings_folder() -> Path:
    return Path(get_upload_folder()) / "persona-recordings"


def _bytes_held(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class Recording:
    """One recording, from its creation to `stop()`; `file` is the MP4 once written."""

    def __init__(self, character: str, sample_rate: int) -> None:
        folder = recordings_folder()
        folder.mkdir(parents=True, exist_ok=True)
        if _bytes_held(folder) >= RECORDINGS_MAX_BYTES:
            raise RecordingError("The server has no room for more recordings now; try later.")
        name = re.sub(r"[^\w-]+", "-", character).strip("-")[:40] or "persona"
        self.folder = folder / uuid.uuid4().hex
        self.folder.mkdir()
        self.path = self.folder / f"{name}-{time.strftime('%Y-%m-%d-%H%M%S')}.mp4"
        self.sample_rate = sample_rate
        self.finished = threading.Event()
        """Set when the encoder is done, the file written (`file`) or given up (None)."""
        self.file: Path | None = None
        self.dropped = 0
        """Frames and sound slices the encoder could not keep up with."""
        self._start: float | None = None
        self._accepting = True
        self._stopped = False
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUED_ITEMS)
        self._thread = threading.Thread(target=self._encode, name="recording", daemon=True)
        self._thread.start()

    @property
    def full(self) -> bool:
        """The recording reached RECORDING_MAX_SECONDS and takes nothing more."""
        return not self._accepting

    def add_frame(self, bgr: np.ndarray, at: float) -> None:
        """A frame shown from `at` (session clock seconds); the first one starts the file."""
        if self._start is None:
            self._start = at
        if not self._take(at):
            return
        self._put("video", bgr, at)

    def add_sound(self, pcm: np.ndarray, at: float) -> None:
        """Mono int16 samples heard from `at`; sound before the first frame is not kept (a
        slice dropped is silence in the file)."""
        if self._start is not None and at >= self._start and self._take(at):
            self._put("audio", pcm.reshape(-1), at)

    def _put(self, kind: str, data: np.ndarray, at: float) -> None:
        try:
            self._queue.put_nowait((kind, data, at - self._start))
        except queue.Full:
            self.dropped += 1

    def _take(self, at: float) -> bool:
        if (
            self._accepting
            and self._start is not None
            and at - self._start >= RECORDING_MAX_SECONDS
        ):
            self._accepting = False
        return self._accepting

    def stop(self) -> None:
        """End the recording; the file is written (`finished`) soon after, off this thread."""
        self._accepting = False
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)

    def delete(self) -> None:
        self.stop()
        self.finished.wait(timeout=10)
        self.file = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def _encode(self) -> None:
        try:
            with av.open(str(self.path), "w") as container:
                _Encoder(container, self.sample_rate).run(self._queue)
            self.file = self.path
        except Exception:
            log.exception("recording failed")
            self.path.unlink(missing_ok=True)
        finally:
            self.finished.set()


class _Encoder:
    """Writes queued frames and sound into an open MP4 container until told to stop."""

    def __init__(self, container: av.container.OutputContainer, sample_rate: int) -> None:
        self.container = container
        self.sample_rate = sample_rate
        self.video: av.VideoStream | None = None
        self.audio = container.add_stream("aac", rate=sample_rate, layout="mono")
        self.last_pts = -1
        self.samples_written = 0

    def run(self, items: queue.Queue) -> None:
        while (item := items.get()) is not None:
            kind, data, seconds = item
            if kind == "video":
                self._frame(data, seconds)
            else:
                self._sound(data, seconds)
        for stream in (self.video, self.audio):
            if stream is not None:
                self.container.mux(stream.encode(None))

    def _frame(self, bgr: np.ndarray, seconds: float) -> None:
        height, width = bgr.shape[:2]
        if self.video is None:
            self.video = self.container.add_stream("libx264", rate=VIDEO_FPS, options=X264_OPTIONS)
            self.video.width, self.video.height = width - width % 2, height - height % 2
            self.video.pix_fmt = "yuv420p"
        pts = round(seconds * VIDEO_FPS)
        if pts <= self.last_pts:  # two frames in one frame's time: keep the first
            return
        self.last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame = frame.reformat(self.video.width, self.video.height, "yuv420p")
        frame.pts, frame.time_base = pts, Fraction(1, VIDEO_FPS)
        self.container.mux(self.video.encode(frame))

    def _sound(self, pcm: np.ndarray, seconds: float) -> None:
        """Sound laid end to end from the file's start: a gap becomes silence, an overlap is
        trimmed, so the voice stays where it was heard against the frames."""
        if self.video is None:  # the first frame was dropped: start with the next one
            return
        due = round(seconds * self.sample_rate)
        if due > self.samples_written:
            pcm = np.concatenate([np.zeros(due - self.samples_written, np.int16), pcm])
        elif due < self.samples_written:
            pcm = pcm[self.samples_written - due :]
        if not len(pcm):
            return
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts, frame.time_base = self.samples_written, Fraction(1, self.sample_rate)
        self.samples_written += len(pcm)
        self.container.mux(self.audio.encode(frame))
