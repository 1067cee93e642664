"""One visitor's session: glues a Conversation and CharacterState to a StreamRunner.

The only place that knows both layers (the app page wires gradio events to these methods).
Frames: `frames()` is the FastRTC generator body; it never blocks the event loop (pipelines are
built and stepped on worker threads) and ends with a friendly message on Stop or when the
stream's time is up. Chat: `send()` shows the message and answers it on a conversation thread
that applies the action and expression the moment they are known, at the next chunk boundary;
`follow()` streams the growing reply to the page. Character and pipeline switches restart the
stream cleanly; bad uploads and unavailable pipelines raise `SessionError`
with a message to show, and change nothing. A backend switch keeps the conversation; one that
cannot answer here is still selected, with a notice, and the offline fallback answers meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastrtc import CloseStream
from pydantic import ValidationError

from persona.backends import make_backend
from persona.backends.base import Backend, BackendError
from persona.backends.download import downloads_under_way
from persona.cards import Card, CardError, default_cards, load_card
from persona.conversation import Conversation
from persona.interpreter import Reading, shared_interpreter
from persona.state import CharacterState
from persona.voice.stt import shared_transcriber
from persona.voice.tts import SAMPLE_RATE, SentenceSplitter, VoiceError, shared_speaker
from pipelines.base import PipelineGone
from pipelines.conditioning import Appearance, hex_rgb
from pipelines.registry import UnknownPipelineError
from pipelines.remote import build_for_stream, stream_pipeline_availability
from pipelines.stream import StreamRunner
from ui.recording import Recording, RecordingError

log = logging.getLogger(__name__)

PLACEHOLDER_SIZE = 512
STREAM_SECONDS = float(os.environ.get("PERSONA_STREAM_SECONDS", "600"))
"""How long one stream runs before it asks the visitor to press Start again."""
PIPELINE_BUILD_WAIT_S = 60.0
"""How long a pipeline switch waits to learn whether the new pipeline started."""
IDLE_STATUS = "stopped · action: idle · expression: neutral · 0.0 fps"


def shown_in_chat(text: str) -> str:
    """Chat text as the page may render it: markdown stays (stage directions in italics), but
    no image loads from anywhere (a tracking pixel in a message, card or model reply would
    make the visitor's browser call any host) and raw HTML shows as text."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("![", "!\\[")
    )


CUT_MARK = " *(cut off)*"
"""Ends a reply the visitor interrupted, in the chat."""


MAX_WAITING_MESSAGES = 3
"""Messages that may wait for their answer; past this the oldest is skipped (a flood must
never queue work, threads or memory)."""
SKIP_MARK = "*(skipped: more messages came)*"
"""The reply of a message skipped for newer ones, in the chat."""
LOOK_SETTLE_SECONDS = 0.3
SEND_BURST = 5
SEND_INTERVAL_S = 1.0
"""A session may send SEND_BURST messages at once, then one every SEND_INTERVAL_S: typing
never meets the limit, a script flooding the chat does."""
MAX_TRANSCRIPT_MESSAGES = 200
"""The chat keeps this many recent messages (every update sends the whole transcript)."""


class _SendAllowance:
    """The rate limit on one session's messages: a bucket of SEND_BURST that refills one
    message every SEND_INTERVAL_S."""

    def __init__(self, now: float) -> None:
        self._tokens, self._at = float(SEND_BURST), now

    def take(self, now: float) -> bool:
        self._tokens = min(SEND_BURST, self._tokens + (now - self._at) / SEND_INTERVAL_S)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass
class _Turn:
    """One message to answer: what was said, to whom, the chat entry its reply writes into,
    and its two signals."""

    message: str
    reply: dict[str, str]
    conversation: Conversation
    state: CharacterState
    card: Card
    acted: Reading
    """What `send` already applied to the character."""
    sent_at: float
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)


class SessionError(ValueError):
    """Something the visitor asked for that cannot be done; the message says why."""


def _placeholder(card: Card) -> np.ndarray:
    """A plain frame in the character's background colour, shown while a pipeline loads."""
    rgb = hex_rgb(card.appearance.background)
    return np.full((PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, 3), rgb[::-1], np.uint8)  # BGR


class Session:
    def __init__(
        self,
        pipeline_name: str,
        backend_name: str,
        *,
        card: Card | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.cards = {c.name: c for c in default_cards()}
        self.pipeline_name = pipeline_name
        self.backend_name = backend_name
        self.offline = make_backend("offline")
        self.backend = self.offline if backend_name == "offline" else make_backend(backend_name)
        self.runner: StreamRunner | None = None
        self.build_error: str | None = None
        self.no_worker: str | None = None
        """Why this stream got no pipeline worker (a full cluster): the stream ends with it."""
        self.streaming = False
        self._stream: object | None = None
        self._stop_requested = threading.Event()
        self._redraw: threading.Timer | None = None
        self._runner_lock = threading.Lock()
        self._chat_changed = threading.Condition()
        self._transcript: list[dict[str, str]] = []
        self._notices: list[str] = []
        self._version = 0
        self._last_turn: _Turn | None = None
        self._current: _Turn | None = None
        self._waiting: deque[_Turn] = deque()
        self._answerer: threading.Thread | None = None
        self._preparing: threading.Thread | None = None
        self._guess = ""
        self._allowance = _SendAllowance(clock())
        self._awaited_change: tuple[float, float] | None = None
        self.reaction_seconds: float | None = None
        """Enter -> the first frame handed out that shows the last change a message asked for."""
        self.reply_seconds: float | None = None
        """The backend's last reply: asked -> its first words."""
        self.recording: Recording | None = None
        """What the visitor sees and hears, being recorded (the media connection feeds it)."""
        self.recorded: Recording | None = None
        """The last recording stopped, kept for download until the next or the visitor leaves."""
        self.closed = False
        self._set_card(card or next(iter(self.cards.values())))

    # -- character, backend and pipeline ----------------------------------------------------

    def _set_card(self, card: Card, key: str | None = None) -> None:
        self.card = card
        self.card_key = key or card.name
        self.cards[self.card_key] = card
        self.state = CharacterState(self.clock())
        self.clear_chat()

    def clear_chat(self) -> None:
        """Start the conversation afresh (the chat's clear button); the stream plays on."""
        self.interrupt()
        self.conversation = Conversation(self.card, self.backend, fallback=self._fallback())
        with self._chat_changed:
            self._transcript = [{"role": "assistant", "content": self.conversation.greeting}]
            self._version += 1
        self._prepare_conversation()

    def _prepare_conversation(self, guess: str = "") -> None:
        """Let the backend get ready for the current conversation's next message (`guess`,
        when the visitor is still speaking it), on one thread per session at most (a flood of
        clears never piles up threads)."""
        self._guess = guess
        if self._preparing is not None and self._preparing.is_alive():
            return  # it prepares whichever conversation and guess are current when it finishes

        def prepare() -> None:
            prepared = None
            while not self.closed and prepared != (self.conversation, self._guess):
                prepared = (self.conversation, self._guess)
                prepared[0].prepare(prepared[1])

        self._preparing = threading.Thread(target=prepare, name="chat-prepare", daemon=True)
        self._preparing.start()

    def _fallback(self) -> Backend | None:
        return None if self.backend is self.offline else self.offline

    def select_card(self, name: str) -> None:
        if name not in self.cards:
            raise SessionError(f"unknown character {name!r}")
        self._set_card(self.cards[name], name)
        self._restart_runner()

    def upload_card(self, blob: bytes) -> Card:
        """Load an uploaded card and switch to it. One named like a card already in the picker
        is listed as "NAME (2)"; it never silently replaces the other."""
        try:
            card = load_card(blob)
        except CardError as error:
            raise SessionError(f"Could not load that card: {error}") from None
        key, number = card.name, 1
        while key in self.cards and self.cards[key] != card:  # never replace another card
            number += 1
            key = f"{card.name} ({number})"
        self._set_card(card, key)
        self._restart_runner()
        return card

    def change_look(self, **fields: str) -> None:
        """Redraw the character with some of its appearance changed (`Appearance` fields:
        colours as #rrggbb, `hair_style`), for this visit; the card keeps its own. The
        stream is rebuilt once the look has settled for LOOK_SETTLE_SECONDS (a colour being
        dragged in a picker changes dozens of times a second)."""
        try:
            appearance = Appearance.model_validate({**self.card.appearance.model_dump(), **fields})
        except ValidationError as error:
            raise SessionError(f"That look cannot be drawn: {error.errors()[0]['msg']}") from None
        if appearance == self.card.appearance:
            return
        update = {"appearance": appearance, "appearance_from": "page"}
        self.card = self.cards[self.card_key] = self.card.model_copy(update=update)
        with self._runner_lock:
            if self._redraw is not None:
                self._redraw.cancel()
            self._redraw = threading.Timer(LOOK_SETTLE_SECONDS, self._restart_runner)
            self._redraw.daemon = True
            self._redraw.start()

    def select_backend(self, name: str) -> str | None:
        """Switch the language backend, keeping the conversation. Returns a notice when it
        cannot answer here: it is selected anyway (a server may come up later), and until it
        answers every reply comes from the offline fallback, each with its own notice."""
        try:
            backend = self.offline if name == "offline" else make_backend(name)
        except BackendError as error:
            raise SessionError(str(error)) from None
        try:
            backend.check()
            notice = None
        except BackendError as error:
            notice = (
                f"The {name} backend cannot answer here: {error}. "
                "Replies come from the offline interpreter until it can."
            )
        self.backend_name, self.backend = name, backend
        self.conversation.backend, self.conversation.fallback = backend, self._fallback()
        if notice is None:
            self._prepare_conversation()
        return notice

    def select_pipeline(self, name: str) -> None:
        """Switch the video pipeline. While streaming, the switch is waited for (up to
        `PIPELINE_BUILD_WAIT_S`): one that fails to start raises `SessionError`, and the
        pipeline that was playing is started again, so the stream goes on."""
        try:
            available, reason = stream_pipeline_availability(name)
        except UnknownPipelineError as error:
            raise SessionError(str(error)) from None
        if not available:
            raise SessionError(f"The {name} pipeline cannot run here: {reason}")
        previous, self.pipeline_name = self.pipeline_name, name
        build = self._restart_runner(fallback=previous)
        if build is not None:
            build.join(PIPELINE_BUILD_WAIT_S)
            if self.pipeline_name != name:
                raise SessionError(f"The {name} pipeline {self.build_error}.")

    # -- video ------------------------------------------------------------------------------

    def _build_runner(
        self, name: str, card: Card
    ) -> tuple[StreamRunner, None] | tuple[None, Exception]:
        """Build pipeline `name` and its runner; on any failure say so in `build_error`, free
        what was built and return the failure instead."""
        pipeline = None
        try:
            pipeline = build_for_stream(name)
            runner = StreamRunner(
                pipeline, card.to_character(), self.state.conditioning_at, clock=self.clock
            )
            return runner, None
        except Exception as error:  # any failure: say so, free what was built, go on
            log.warning("could not start pipeline %s: %s", name, error)
            self.build_error = (
                str(error)  # no worker for it (a full cluster): said as it is
                if isinstance(error, PipelineGone)
                else f"could not start {name} ({type(error).__name__})"
            )
            if pipeline is not None:
                pipeline.close()
            return None, error

    def _start_runner(self, fallback: str | None = None) -> threading.Thread:
        """Build the pipeline and start its runner, on a worker thread (building can be slow).
        If it fails, `fallback` (the pipeline that was playing) is built instead. One pipeline
        at a time: two large models may not fit in memory together."""
        card, name = self.card, self.pipeline_name
        self.no_worker = None

        def build() -> None:
            self.build_error = None
            runner, failure = self._build_runner(name, card)
            if runner is None and fallback not in (None, name) and self.pipeline_name == name:
                self.pipeline_name = fallback
                self.build_error += f"; back on {fallback}"
                runner, failure = self._build_runner(fallback, card)
            if runner is None:
                if isinstance(failure, PipelineGone):
                    self.no_worker = str(failure)
                return
            with self._runner_lock:
                if self._stop_requested.is_set() or card is not self.card:
                    runner.pipeline.close()
                    return
                self.runner = runner
                runner.start()

        thread = threading.Thread(target=build, name="pipeline-build", daemon=True)
        thread.start()
        return thread

    def _stop_runner(self) -> None:
        with self._runner_lock:
            runner, self.runner = self.runner, None
        if runner is not None:
            runner.stop()

    def _restart_runner(self, fallback: str | None = None) -> threading.Thread | None:
        """Rebuild the stream's pipeline (None when not streaming: Start builds it)."""
        if not self.streaming:
            return None
        self._stop_runner()
        return self._start_runner(fallback)

    def stop(self) -> None:
        """Stop button: the stream ends at its next frame and frees its pipeline; a recording
        ends now, its file offered with the page's answer."""
        self._stop_requested.set()
        self._stop_runner()
        self.stop_recording()

    def close(self) -> None:
        """The visitor's page is gone: stop everything and free what the backend keeps."""
        self.closed = True
        self.stop()
        self.interrupt()
        self.backend.close()
        if self.recorded is not None:
            self.recorded.delete()

    # -- recording ------------------------------------------------------------------------

    def start_recording(self) -> None:
        """Record the stream from now on, replacing (and deleting) the last recording."""
        if not self.streaming:
            raise SessionError("Press Start first: a recording holds what the video shows.")
        if self.recording is not None:
            return
        try:
            recording = Recording(self.card.name, SAMPLE_RATE)
        except (RecordingError, OSError) as error:
            raise SessionError(str(error)) from None
        if self.recorded is not None:
            self.recorded.delete()
            self.recorded = None
        self.recording = recording

    def stop_recording(self) -> None:
        """End the recording; its file is ready (`recording_state`) a moment later."""
        recording, self.recording = self.recording, None
        if recording is not None:
            recording.stop()
            self.recorded = recording

    def recording_state(self) -> tuple[bool, Path | None]:
        """(recording now, the file of the last recording once it is written)."""
        recorded = self.recorded
        return self.recording is not None, recorded.file if recorded is not None else None

    def frames(self) -> Iterator[np.ndarray | CloseStream]:
        """The media connection's frame source: BGR frames at the display's pace, never
        blocking. One visitor, one stream: a newer stream of this session ends this one."""
        stream = object()
        self._stream = stream
        self._stop_runner()
        self._stop_requested.clear()
        self.streaming = True
        self._start_runner()
        deadline = self.clock() + STREAM_SECONDS
        last = _placeholder(self.card)
        try:
            while True:
                if self._stream is not stream:
                    yield CloseStream("This page started another stream; this one has ended.")
                    return
                if self._stop_requested.is_set():
                    self._end_stream(stream)
                    yield CloseStream("Stream stopped. Press Start to watch again.")
                    return
                if self.clock() > deadline:
                    self._end_stream(stream)  # free the pipeline now: we may never be resumed
                    minutes = STREAM_SECONDS / 60
                    yield CloseStream(
                        f"Time's up: streams last {minutes:g} minutes here. "
                        "Press Start to continue."
                    )
                    return
                runner = self.runner
                ended = self._worker_lost(runner)
                if ended is not None:
                    self._end_stream(stream)
                    yield CloseStream(ended)
                    return
                frame = runner.next_frame() if runner is not None else None
                if frame is not None:
                    last = np.ascontiguousarray(frame.image[..., ::-1])
                    self._note_shown(frame.display_at)
                yield last
        finally:
            self._end_stream(stream)

    def _worker_lost(self, runner: StreamRunner | None) -> str | None:
        """Why the stream cannot go on (its pipeline's worker died, or none was free), or None."""
        if runner is not None and runner.gone is not None:
            return f"The video worker stopped: {runner.gone}. Press Start to go on with a new one."
        if runner is None and self.no_worker is not None:
            return f"No video worker is free: {self.no_worker}."
        return None

    def _await_change(self, sent_at: float, at: float) -> None:
        """A message sent at `sent_at` changed the character from display time `at` on."""
        self._awaited_change = (sent_at, at)

    def _note_shown(self, display_at: float) -> None:
        awaited = self._awaited_change
        if awaited is not None and display_at >= awaited[1]:
            self._awaited_change = None
            self.reaction_seconds = self.clock() - awaited[0]

    def _end_stream(self, stream: object) -> None:
        """End `stream` if it is still this session's stream (a newer one plays on)."""
        if self._stream is stream:
            self._stream = None
            self.streaming = False
            self._stop_runner()
            self.stop_recording()

    def status(self) -> str:
        """`action: NAME · expression: NAME · N fps` of what the video shows now."""
        runner = self.runner
        shown = runner.showing if runner is not None else None
        if shown is not None:
            action, expression = shown.conditioning.action, shown.conditioning.expression
        else:
            action, expression = self.state.current(self.clock())
        fps = runner.fps() if runner is not None and self.streaming else 0.0
        where = (
            "live"
            if self.streaming and shown is not None
            else ("starting" if self.streaming else "stopped")
        )
        error = (runner.error if runner is not None else None) or (
            self.build_error if self.streaming else None
        )
        problem = f" · pipeline error: {error}" if error else ""
        brain = "".join(f" · {p.describe()}" for p in downloads_under_way())
        return (
            f"{where} · action: {action} · expression: {expression} · {fps:.1f} fps · "
            f"{self.card.name} on {self.pipeline_name}{problem}{brain}"
        )

    # -- chat -----------------------------------------------------------------------------

    def chat_history(self) -> list[dict[str, str]]:
        """What the chat shows: the greeting, then every message and reply so far (a copy)."""
        with self._chat_changed:
            return self._shown_transcript()

    def _shown_transcript(self) -> list[dict[str, str]]:
        """The transcript as the page shows it (a copy); call with `_chat_changed` held."""
        return [{**m, "content": shown_in_chat(m["content"])} for m in self._transcript]

    def send(self, message: str) -> bool:
        """Show the message at once and answer it on the session's conversation thread. An
        action or expression the message asks for reaches the character now (the offline
        interpreter reads it in milliseconds), even while earlier replies are still being
        written; the backend's own may follow with the reply. A message sent while the
        character talks cuts it off (barge-in). Replies come in the order sent, one at a
        time; past MAX_WAITING_MESSAGES waiting, the oldest waiting is skipped. A message that
        cannot be sent (empty, too long, or over the rate limit) leaves the chat as it is,
        queues a notice for `follow` and returns False."""
        sent_at = self.clock()
        with self._chat_changed:
            problem = Conversation.problem(message)
            if problem is None and not self._allowance.take(self.clock()):
                problem = (
                    f"You are sending messages faster than {self.card.name} can read them; "
                    "wait a moment."
                )
            if problem is not None:
                self._notices.append(problem)
                self._version += 1
                self._chat_changed.notify_all()
                return False
        self.interrupt()
        text = Conversation.clean(message)
        reading = shared_interpreter().read(text)
        at = self._change_time()
        if reading.action is not None:
            self.state.apply_action(reading.action, at)  # type: ignore[arg-type]
        if reading.expression is not None:
            self.state.apply_expression(reading.expression, at)  # type: ignore[arg-type]
        if reading.action is not None or reading.expression is not None:
            self._await_change(sent_at, at)
        with self._chat_changed:
            reply = {"role": "assistant", "content": ""}
            self._transcript += [{"role": "user", "content": text}, reply]
            del self._transcript[:-MAX_TRANSCRIPT_MESSAGES]
            self._version += 1
            if len(self._waiting) >= MAX_WAITING_MESSAGES:
                skipped = self._waiting.popleft()
                skipped.reply["content"] = SKIP_MARK
                skipped.done.set()
            turn = _Turn(message, reply, self.conversation, self.state, self.card, reading, sent_at)
            self._waiting.append(turn)
            self._last_turn = turn
            if self._answerer is None:
                self._answerer = threading.Thread(
                    target=self._answer_waiting, name="chat-turns", daemon=True
                )
                self._answerer.start()
        return True

    def _answer_waiting(self) -> None:
        """The session's conversation thread: answers waiting messages in order, then ends."""
        while True:
            with self._chat_changed:
                if not self._waiting:
                    self._answerer = None
                    self._prepare_conversation()  # the next message's prompt, history and all
                    return
                turn = self._current = self._waiting.popleft()
                brief = bool(self._waiting)
            self._answer(turn, brief=brief)

    def expect(self, guess: str) -> None:
        """The visitor paused, having said `guess` so far: the model reads it now, so that if
        the pause proves to be the end of their turn the answer only has to be written. Left
        alone while a reply is being written (the model is busy with it)."""
        with self._chat_changed:
            busy = self._answerer is not None
        if not busy and any(c.isalnum() for c in guess):
            self._prepare_conversation(guess)

    def hear(self, samples: np.ndarray, early: Future[str] | None = None) -> str:
        """The visitor said something (16 kHz mono): transcribe it (or take `early`, its
        transcript made while the visitor paused) and answer it like a typed message.
        Returns what was heard ("" for noise, which is not sent)."""
        try:
            text = early.result() if early else shared_transcriber().transcribe(samples)
        except Exception:  # never lose the session over one utterance
            log.exception("transcription failed")
            with self._chat_changed:
                self._notices.append("Sorry, I could not make out what you said; please try again.")
                self._version += 1
            return ""
        if any(c.isalnum() for c in text):
            self.send(text)
            return text
        return ""

    @property
    def chat_version(self) -> int:
        """Changes whenever the chat or its notices do."""
        return self._version

    def take_notices(self) -> list[str]:
        """Notices not yet shown to the visitor (each is handed out once)."""
        with self._chat_changed:
            notices, self._notices = self._notices, []
            return notices

    def interrupt(self) -> bool:
        """Barge-in: the character stops talking now (sound and mouth), the reply being written
        stops, and the chat marks it as cut. True when there was something to cut. A reply
        that has not begun (still thinking) is not cut: its message is still answered."""
        speech_cut = self.state.speech.cut(self.clock())
        with self._chat_changed:
            turn = self._current
            writing = turn is not None and not turn.done.is_set() and turn.reply["content"]
            if turn is None or not (writing or speech_cut):
                return False
            turn.cancelled.set()
            if not turn.reply["content"].endswith(CUT_MARK):
                turn.reply["content"] = turn.reply["content"].rstrip() + CUT_MARK
            self._version += 1
            self._chat_changed.notify_all()
        return True

    def _answer(self, turn: _Turn, *, brief: bool = False) -> None:
        """Answer one turn. A `brief` answer, for a message the visitor has already sent
        another after, comes from the interpreter alone: its action and expression at once
        and a line, while the language model is kept for the newest message (a quick
        follow-up, or a flood, never queues seconds of model time before it)."""
        sentences = SentenceSplitter()
        using = self.offline if brief else None
        asked, answered = self.clock(), False
        try:
            with contextlib.closing(turn.conversation.respond(turn.message, using=using)) as events:
                for event in events:
                    if turn.cancelled.is_set():
                        break
                    if event.text and not (answered or brief):
                        answered, self.reply_seconds = True, self.clock() - asked
                    at = self._change_time()  # (what `send` applied is not started again)
                    new_action = event.action and event.action != turn.acted.action
                    new_expression = event.expression and event.expression != turn.acted.expression
                    if new_action:
                        turn.state.apply_action(event.action, at)  # type: ignore[arg-type]
                    if new_expression:
                        turn.state.apply_expression(event.expression, at)  # type: ignore[arg-type]
                    if new_action or new_expression:
                        self._await_change(turn.sent_at, at)
                    with self._chat_changed:
                        turn.reply["content"] += event.text
                        self._notices += [event.notice] if event.notice else []
                        self._version += 1
                        self._chat_changed.notify_all()
                    self._say(sentences.push(event.text), turn)
            self._say(sentences.flush(), turn)
        except Exception:  # never lose the session over one reply
            log.exception("chat turn failed")
            with self._chat_changed:
                self._notices.append("Sorry, that reply failed; please try again.")
        finally:
            turn.done.set()
            with self._chat_changed:
                self._chat_changed.notify_all()

    def _change_time(self) -> float:
        """The earliest display time a change made now can reach."""
        runner = self.runner
        return runner.change_time() if runner is not None else self.clock()

    def _say(self, sentences: list[str], turn: _Turn) -> None:
        """Speak whole sentences as they are written: the first is heard while the rest of the
        reply is still being written. A voice that fails leaves the words in the chat."""
        for sentence in sentences:
            if turn.cancelled.is_set():
                return
            try:
                speech = shared_speaker().say(sentence, turn.card.voice)
            except VoiceError as error:
                log.warning("cannot speak: %s", error)
                return
            if not turn.cancelled.is_set():
                turn.state.speech.add(speech, self._change_time())

    def follow(self) -> Iterator[tuple[list[dict[str, str]], list[str]]]:
        """Yield (chat, notices to show) as replies grow, until every message sent so far is
        answered, including messages sent while it runs: the page drops a follower started
        while another still streams (gradio triggers an event chain once at a time), so the
        running one must carry the new reply. It never decides when the video reacts."""
        seen = None
        while True:
            with self._chat_changed:
                last_turn = self._last_turn
                finished = last_turn is None or last_turn.done.is_set()
                if self._version == seen and not finished:
                    self._chat_changed.wait(timeout=1.0)
                    continue
                seen = self._version
                chat = self._shown_transcript()
                notices, self._notices = self._notices, []
            yield chat, notices
            if finished:
                return

    def chat(self, message: str) -> Iterator[tuple[list[dict[str, str]], list[str]]]:
        """`send`, then `follow`: one message answered, as the page sees it."""
        self.send(message)
        yield from self.follow()
