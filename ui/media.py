"""The visitor's media connection: the character's video and voice out, the microphone in.

One FastRTC `WebRTC(modality="audio-video", mode="send-receive")` peer connection carries both
outgoing tracks in one MediaStream, so the browser plays them in sync (FastRTC's receive mode
cannot send audio with video). One handler per connection (`copy()`), driven by FastRTC:

- `video_emit` hands out the session's frames (`Session.frames()`, the same generator body the
  stream always had) at the display's pace, and with them what changed on the page (`PageUpdate`:
  the chat, the status line the moment what it names changes, the metrics once a second, the
  recording's state), so the page is told, not polled; a recording being made gets each frame
  and each slice of sound as it goes out (`ui/recording.py`);
- `emit` hands out the character's speech 20 ms at a time, each slice when it falls due on the
  session's clock, read from the same `SpeechSchedule` the mouth follows (handing FastRTC
  seconds of audio at once plays on its own schedule, out of sync);
- `receive` reads the microphone through voice activity detection: speech starting while the
  character talks cuts it off (barge-in), and a finished utterance is sent as the visitor's
  message, transcribed off the event loop (already while the visitor paused, and read by the
  model then too, so the answer waits for neither once the pause proves to be the end).

The page sends silence until the visitor turns the microphone on (`ui/media.js`), so nothing is
asked of a visitor who only types. Knows the session's public methods, nothing of the persona
layer's insides or the pipelines.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import gradio.routes
import numpy as np
from fastrtc import AdditionalOutputs, AsyncAudioVideoStreamHandler, CloseStream

from persona.voice.stt import LISTEN_RATE, shared_transcriber
from persona.voice.tts import SAMPLE_RATE
from persona.voice.vad import SpeechDetector
from ui.metrics import PUSH_SECONDS, Figures, MetricsHistory
from ui.session import Session

log = logging.getLogger(__name__)

VIDEO_FPS = 30
AUDIO_SLICE = SAMPLE_RATE // 50
"""Samples in one 20 ms audio frame."""
PEER_SILENT_SECONDS = 3.0
"""A page sends sound 50 times a second (silence until the microphone is on): nothing for
this long means it is gone without closing (a killed browser, a lost network), and its
connection is dropped then rather than after WebRTC's own ~30 s timeout, freeing its slot and
its pipeline."""
AUDIO_LAG_SECONDS = 0.04
"""Sound is sent this much later than the frames it belongs to: measured in Chromium, the
voice otherwise arrived 20-80 ms ahead of the mouth (about 35 ms on average), and viewers
notice sound early sooner than late (ITU-R BT.1359: 45 ms early, 125 ms late)."""
CLOSE_GRACE_SECONDS = 1.0
"""A stream that ended (stopped, timed out, replaced, or its page closed) drops its connection
this long after telling the page, freeing its slot even if the page never closes its side."""
CHAT_PUSH_SECONDS = 0.2
"""How often, at most, a changed chat is pushed to the page (voice turns have no Enter to
follow them)."""

_FPS = re.compile(r"[\d.]+ fps")


@dataclass
class PageUpdate:
    """What the stream pushes to the page beside its frames; None leaves a part as it is."""

    chat: list[dict[str, str]] | None = None
    notices: list[str] = field(default_factory=list)
    status: str | None = None
    metrics: str | None = None
    fps_chart: str | None = None
    latency_chart: str | None = None
    recording: tuple[bool, Path | None] | None = None
    """(recording now, the last recording's file), from `Session.recording_state`."""


class _EndOfStreamNoise(logging.Filter):
    """Drops the traceback aiortc logs each time a stream ends: FastRTC's audio track answers
    its sender's last request with nothing once the stream is closed (fastrtc 0.0.34)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "object has no attribute 'pts'" not in record.getMessage()


logging.getLogger("aiortc.rtcrtpsender").addFilter(_EndOfStreamNoise())


def _print_but_not_content_types(*args: object, **kwargs: object) -> None:
    """gradio 5.50 prints the content type of every component request it reads (a debugging
    line left in `gradio/routes.py`), one line per WebRTC offer. gradio 5 has no release
    without it and FastRTC 0.0.34 needs gradio < 6, so that one print is dropped, by name
    lookup in that module only."""
    if not (args and args[0] == "content_type"):
        print(*args, **kwargs)  # type: ignore[call-overload]


gradio.routes.print = _print_but_not_content_types  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=1)
def _transcription_worker() -> ThreadPoolExecutor:
    """One thread for every visitor's speech: the model uses one core, and queued utterances
    wait their turn instead of piling up threads."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcribe")


def _transcribe_guess(session: Session, samples: np.ndarray) -> str:
    """What the visitor said before pausing; the session's model starts reading it at once."""
    text = shared_transcriber().transcribe(samples)
    session.expect(text)
    return text


class PersonaStream(AsyncAudioVideoStreamHandler):
    def __init__(
        self,
        find_session: Callable[[object], Session],
        drop_connection: Callable[[str], Awaitable[None]],
        count_streams: Callable[[], int],
    ) -> None:
        super().__init__(
            expected_layout="mono",
            output_sample_rate=SAMPLE_RATE,
            input_sample_rate=LISTEN_RATE,
            fps=VIDEO_FPS,
        )
        self._find_session = find_session
        self._drop_connection = drop_connection
        self._count_streams = count_streams
        self._heard_at: float | None = None
        self._watchdog: asyncio.Task | None = None
        self._webrtc_id = ""
        self.session: Session | None = None
        self._frames = None
        self._last_frame = np.zeros((64, 64, 3), np.uint8)
        self._closing: CloseStream | None = None
        self._audio_start: float | None = None
        self._samples_sent = 0
        self._detector = SpeechDetector()
        self._early: Future[str] | None = None
        self._chat_version = -1
        self._chat_pushed_at = 0.0
        self._status = ""
        self._status_pushed_at = 0.0
        self._metrics_pushed_at = 0.0
        self._history = MetricsHistory()
        self._recording_state: tuple[bool, Path | None] = (False, None)

    def copy(self) -> PersonaStream:
        return PersonaStream(self._find_session, self._drop_connection, self._count_streams)

    async def start_up(self) -> None:
        await self.wait_for_args()
        try:
            session = self._find_session(self.latest_args[2])
        except Exception as error:  # the page's state is missing: say so and end
            self._closing = CloseStream(f"The page is still loading; press Start again. {error}")
            return
        self._frames = session.frames()
        self.session = session
        self._heard_at = session.clock()
        self._webrtc_id = self.latest_args[1]
        self._watchdog = asyncio.create_task(self._watch_peer())  # held

    async def _watch_peer(self) -> None:
        """Drop the connection once the page has gone quiet (its senders stop asking for our
        frames then too, so this cannot wait for them), or soon after the stream ended."""
        while self._frames is not None:
            await asyncio.sleep(0.5)
            if self._peer_gone():
                log.info("viewer gone: nothing received for %.0f s", PEER_SILENT_SECONDS)
                await self.shutdown()
                break
        else:
            await asyncio.sleep(CLOSE_GRACE_SECONDS)  # the page hears why first
        await self._drop_connection(self._webrtc_id)

    # -- video ------------------------------------------------------------------------------

    async def video_emit(self):
        """The frame to show now (BGR); FastRTC calls this at VIDEO_FPS."""
        if self._frames is not None and self._closing is None:
            item = next(self._frames, None)
            if isinstance(item, CloseStream) or item is None:
                self._closing = item or CloseStream("Stream ended. Press Start to watch again.")
            else:
                self._last_frame = item
        recording = self.session.recording if self.session is not None else None
        if recording is not None:
            recording.add_frame(self._last_frame, self.session.clock())
        update = self._page_update()
        return (self._last_frame, update) if update is not None else self._last_frame

    def _peer_gone(self) -> bool:
        session, heard_at = self.session, self._heard_at
        return (
            self._frames is not None
            and session is not None
            and heard_at is not None
            and session.clock() - heard_at > PEER_SILENT_SECONDS
        )

    def _page_update(self) -> AdditionalOutputs | None:
        """What changed on the page since last pushed: the chat and notices (at most every
        CHAT_PUSH_SECONDS), the status line (at once when what it names changes, its fps once
        a second), the metrics (once a second) and the recording's state (a recording that
        reached its cap is stopped here, and its file offered)."""
        session = self.session
        if session is None:
            return None
        now, update, pushing = session.clock(), PageUpdate(), False
        version = session.chat_version
        if version != self._chat_version and now - self._chat_pushed_at >= CHAT_PUSH_SECONDS:
            self._chat_version, self._chat_pushed_at, pushing = version, now, True
            update.chat, update.notices = session.chat_history(), session.take_notices()
        status = session.status()
        if status != self._status and (
            _FPS.sub("", status) != _FPS.sub("", self._status)
            or now - self._status_pushed_at >= PUSH_SECONDS
        ):
            self._status, self._status_pushed_at, pushing = status, now, True
            update.status = status
        if now - self._metrics_pushed_at >= PUSH_SECONDS:
            self._metrics_pushed_at, pushing = now, True
            figures = Figures.of(session, self._count_streams())
            self._history.add(now, figures)
            update.metrics = figures.table(session.pipeline_name, session.backend_name)
            update.fps_chart = self._history.fps_chart(now)
            update.latency_chart = self._history.latency_chart(now)
        if session.recording is not None and session.recording.full:
            session.stop_recording()
        recording = session.recording_state()
        if recording != self._recording_state:
            self._recording_state, update.recording, pushing = recording, recording, True
        return AdditionalOutputs(update) if pushing else None

    # -- audio out ----------------------------------------------------------------------------

    async def emit(self):
        """The next 20 ms of the character's voice, returned when it is due (never early, so
        the browser plays it against the same clock as the video)."""
        if self._closing is not None:
            closing, self._closing = self._closing, None
            self._frames = None
            return closing
        session = self.session
        if session is None:
            await asyncio.sleep(AUDIO_SLICE / SAMPLE_RATE)
            return (SAMPLE_RATE, np.zeros((1, AUDIO_SLICE), np.int16))
        if self._audio_start is None:
            self._audio_start = session.clock()
        slice_start = self._audio_start + self._samples_sent / SAMPLE_RATE
        wait = slice_start - session.clock()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.2:  # the loop stalled: skip ahead rather than play late forever
            self._samples_sent += round(-wait * SAMPLE_RATE) // AUDIO_SLICE * AUDIO_SLICE
            slice_start = self._audio_start + self._samples_sent / SAMPLE_RATE
        samples = session.state.speech.audio(
            slice_start - AUDIO_LAG_SECONDS, AUDIO_SLICE, SAMPLE_RATE
        )
        self._samples_sent += AUDIO_SLICE
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        recording = session.recording
        if recording is not None:
            recording.add_sound(pcm, slice_start)
        return (SAMPLE_RATE, pcm.reshape(1, -1))

    # -- audio in -----------------------------------------------------------------------------

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        session = self.session
        if session is None:
            return
        self._heard_at = session.clock()
        _, pcm = frame
        samples = pcm.reshape(-1).astype(np.float32) / 32768.0
        worker = _transcription_worker()
        for event in self._detector.feed(samples):
            if event.kind == "started":
                session.interrupt()  # barge-in: the visitor talks over the character
            elif event.kind == "paused":  # transcribe now; kept if the visitor has finished
                self._early = worker.submit(_transcribe_guess, session, event.samples)
            elif event.kind == "resumed":
                self._early = None
            elif event.kind == "ended":
                early, self._early = self._early, None
                worker.submit(session.hear, event.samples, early)

    def resample(self, frame):  # type: ignore[no-untyped-def]
        """The microphone in 20 ms pieces. (FastRTC sizes its resampler's output by the input
        frame's sample count: 960 samples of 48 kHz came out as 960 of 16 kHz, 60 ms, which
        held back every voice-activity decision by 40 ms.)"""
        if self._resampler is None:
            import av

            self._resampler = av.AudioResampler(
                format="s16",
                layout=self.expected_layout,
                rate=self.input_sample_rate,
                frame_size=round(frame.samples * self.input_sample_rate / frame.sample_rate),
            )
        yield from self._resampler.resample(frame)

    async def video_receive(self, frame: np.ndarray) -> None:
        """The page's placeholder camera track (it sends no camera): only a sign of life."""
        if self.session is not None:
            self._heard_at = self.session.clock()

    async def shutdown(self) -> None:
        if self._frames is not None:
            self._frames.close()  # ends the stream and frees the pipeline
            self._frames = None
