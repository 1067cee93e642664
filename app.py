"""Persona: chat with a character who lives in a real-time video stream.

Wiring only: the gradio page and its events, the FastRTC stream, `/health`, and the server.
Session logic lives in `ui/session.py`; the conversation in `persona/`; video in `pipelines/`.

    python app.py [--host HOST] [--port PORT] [--share]     # python app.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import html
import logging
import os
import re
import secrets
import sys
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import get_args

import gradio as gr
from fastapi import FastAPI
from fastrtc import WebRTC

from persona.backends import BACKENDS, default_backend_name, make_backend
from persona.backends.base import BackendError
from persona.backends.download import downloads_under_way
from persona.cards import MAX_CARD_BYTES, Card, default_cards
from persona.interpreter import shared_interpreter
from persona.voice import preload_voice
from persona.voice.tts import VoiceError
from pipelines.conditioning import Appearance
from pipelines.registry import default_pipeline_name
from pipelines.remote import cluster_report, ray_address, stream_pipelines
from pipelines.remote import connect as connect_to_cluster
from ui.media import PageUpdate, PersonaStream
from ui.metrics import METRICS_WAITING
from ui.session import IDLE_STATUS, Session, SessionError, shown_in_chat

log = logging.getLogger("persona.app")
HERE = Path(__file__).resolve().parent
MAX_STREAMS: int | None = (
    int(os.environ["PERSONA_MAX_STREAMS"])
    if os.environ.get("PERSONA_MAX_STREAMS")
    else (None if ray_address() else 4)
)
"""Streams this process lets in at once. On a Ray cluster, unset: as many as the cluster has
places for (a stream that finds none is told so: `pipelines.remote.ClusterFull`)."""
EXAMPLES = [
    "please wave",
    "dance happily",
    "sit down",
    "look surprised",
    "turn around",
    "give me a thumbs up",
    "my cat is sick today",
    "tell me about yourself",
]


def _new_state() -> dict[str, str]:
    return {"key": uuid.uuid4().hex}


SESSIONS: dict[str, Session] = {}
"""Live sessions by key. The gr.State holds only the key: gradio hands the stream generator a
copy of the state, so the Session itself must live outside it."""


CLOSED_KEYS: OrderedDict[str, None] = OrderedDict()
"""Keys of sessions whose page has closed (the newest MAX_CLOSED_KEYS): an event of that page
still in flight must not bring its session back to life, unseen and never closed."""
MAX_CLOSED_KEYS = 10_000


def _session(state: dict) -> Session:
    """The visitor's session, created on first use. A caller without the page's session
    state (an HTTP API client) gets a clear error, never a traceback."""
    if not isinstance(state, dict) or not isinstance(state.get("key"), str):
        raise gr.Error("Open the page to chat: these events need the page's session.")
    key = state["key"]
    if key in CLOSED_KEYS:
        raise gr.Error("This page was closed; reload it to chat again.")
    if key not in SESSIONS:
        SESSIONS[key] = Session(default_pipeline_name(), default_backend_name())
    return SESSIONS[key]


PAGES: dict[str, str] = {}
"""Session keys by gradio's page id (session_hash), so a closed page closes its session."""


def _close(state: dict) -> None:
    key = state.get("key", "")
    CLOSED_KEYS[key] = None
    while len(CLOSED_KEYS) > MAX_CLOSED_KEYS:
        CLOSED_KEYS.popitem(last=False)
    session = SESSIONS.pop(key, None)
    if session is not None:
        session.close()


def _close_page(session_hash: str) -> None:
    """The page was closed or reloaded: its session goes with it (its stream, if any, ends
    and drops its connection). gradio's State delete_callback does not fire for this."""
    key = PAGES.pop(session_hash, None)
    if key is not None:
        _close({"key": key})


def _forget_finished_events(page: gr.Blocks) -> None:
    """gradio's queue keeps the task of every event it ever ran (5.50: Queue._asyncio_tasks,
    only cleared at shutdown), each holding its request: ~1 MB of RSS per visit. Finished
    ones are let go here, on the event loop, which is the only place that list is touched."""
    queue = getattr(page, "_queue", None)
    tasks = getattr(queue, "_asyncio_tasks", None)
    if isinstance(tasks, list):
        tasks[:] = [task for task in tasks if not task.done()]


def _pipeline_choices() -> list[tuple[str, str]]:
    return [
        (s.name if s.available else f"{s.name} (unavailable: {s.reason})", s.name)
        for s in stream_pipelines()
    ]


ENVIRONMENT = """environment:
  PERSONA_PIPELINE        the default video pipeline (puppet, tiny_ar, wan)
  PERSONA_BACKEND         the default brain: embedded | offline | openai | hf | transformers
                          (default: embedded where its model is installed, else offline)
  PERSONA_MAX_STREAMS     concurrent streams (default 4; on a Ray cluster, its capacity)
  PERSONA_RAY_ADDRESS     run each stream's pipeline on this Ray cluster (auto, or
                          HOST:PORT with RAY_AUTH_MODE=token); see the README
  PERSONA_STREAM_SECONDS  length of one stream (default 600)
  PERSONA_TURN_URLS       a TURN relay of your own for WebRTC through NAT and share links
                          (comma-separated turn: URLs), with PERSONA_TURN_USERNAME and
                          PERSONA_TURN_CREDENTIAL
  HF_TOKEN                on a Space: TURN relay credentials through fastrtc's Cloudflare
                          relay (used when PERSONA_TURN_URLS is not set)
  GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, GRADIO_SHARE   defaults for --host, --port, --share
"""


def _relay_configured() -> bool:
    return bool(os.environ.get("PERSONA_TURN_URLS") or os.environ.get("HF_TOKEN"))


def _rtc_configuration() -> dict | None:
    """The WebRTC relay the page's connections may use: a TURN server of your own
    (PERSONA_TURN_URLS...), else Cloudflare's through fastrtc on a Space (HF_TOKEN), else none
    (direct connections only: fine on one machine or a LAN, not through most NATs)."""
    if urls := os.environ.get("PERSONA_TURN_URLS"):
        return {
            "iceServers": [
                {
                    "urls": [u.strip() for u in urls.split(",") if u.strip()],
                    "username": os.environ.get("PERSONA_TURN_USERNAME", ""),
                    "credential": os.environ.get("PERSONA_TURN_CREDENTIAL", ""),
                }
            ]
        }
    if not (token := os.environ.get("HF_TOKEN")):
        return None
    try:
        from fastrtc import get_cloudflare_turn_credentials

        return get_cloudflare_turn_credentials(hf_token=token)
    except Exception as error:
        log.warning("no TURN credentials (%s); direct connections only", type(error).__name__)
        return None


MODELS_LOADED = threading.Event()
"""Set once `_preload_models` is done (`/health` says `"ready"`)."""


def _preload_models() -> None:
    """Load the interpreter, the default backend's model and the voice before the first
    visitor needs them (loading one later would stall that visitor, or the event loop)."""
    try:
        _load_models()
        _freeze_start_up_objects()
    finally:
        MODELS_LOADED.set()


def _load_models() -> None:
    if ray_address():
        connect_to_cluster(ray_address())
    shared_interpreter()
    try:
        make_backend(default_backend_name()).preload()
    except BackendError as error:
        log.warning("the default brain cannot answer here: %s", error)
    try:
        preload_voice()
    except VoiceError as error:
        log.warning("the character cannot speak or listen here: %s", error)


# -- event handlers: each one line of glue to the session -------------------------------------


async def _drop_connection(video: WebRTC, webrtc_id: str) -> None:
    """End a connection from the server's side (its viewer is gone): free its slot at once
    and close the peer connection, which otherwise lives until WebRTC's own timeout."""
    connection = video.pcs.get(webrtc_id)
    video.clean_up(webrtc_id)
    if connection is not None:
        await connection.close()
    _collect_garbage_soon()


GARBAGE_DELAY_SECONDS = 5.0
_garbage_due: list[asyncio.TimerHandle] = []


def _collect_garbage_soon() -> None:
    """A closed peer connection is a web of reference cycles (aiortc's transports, senders
    and tracks), and what it holds, its sockets and the threads of FFmpeg's audio resampler
    among them, is freed only when Python collects cycles: with gradio and torch loaded that
    happened so seldom that 100 visits left 40 threads behind. So one collection runs a few
    seconds after connections close (their last tasks done), ~30 ms with the start-up objects
    frozen out of it (`_freeze_start_up_objects`)."""
    if not _garbage_due:
        loop = asyncio.get_running_loop()
        _garbage_due.append(loop.call_later(GARBAGE_DELAY_SECONDS, _collect_garbage))


def _collect_garbage() -> None:
    _garbage_due.clear()
    gc.collect()


def _freeze_start_up_objects() -> None:
    """Move everything alive once the models are loaded (torch, gradio, the models: ~500,000
    objects) out of the garbage collector's sight: they live as long as the server, and a full
    collection then takes ~30 ms instead of ~260 (Python's advice for long-lived servers)."""
    gc.collect()
    gc.freeze()


def on_load():
    """Runs before the session exists (gradio initialises State after page-load events)."""
    cards = default_cards()
    return (
        [{"role": "assistant", "content": shown_in_chat(cards[0].greeting())}],
        gr.update(choices=[c.name for c in cards], value=cards[0].name),
        IDLE_STATUS,
        *_look(cards[0]),
    )


LOOK_COLOURS = {
    "hair": "Hair",
    "eyes": "Eyes",
    "skin": "Skin",
    "top": "Top",
    "bottom": "Trousers or skirt",
    "shoes": "Shoes",
}
"""The appearance colours a visitor can adjust, and their labels."""
HAIR_STYLES = list(get_args(Appearance.model_fields["hair_style"].annotation))
LOOK_PARTS = len(LOOK_COLOURS) + 2
"""The look panel's components: the note, the colours, the hair style."""


def _look(card: Card) -> tuple:
    """The look panel for `card`: where its look came from, its colours and hair style."""
    name, appearance = html.escape(card.name), card.appearance
    note = {
        "card": f"{name}'s look comes from the card.",
        "text": f"Read from {name}'s description: *{html.escape(appearance.description)}*.",
        "default": f"{name}'s card does not describe a look, so a stand-in figure is drawn.",
        "page": f"{name}'s look as adjusted here, for this visit.",
    }[card.appearance_from]
    colours = (getattr(appearance, field) for field in LOOK_COLOURS)
    return note, *colours, appearance.hair_style


def _as_hex(colour: str) -> str:
    """A picker's colour as #rrggbb: gradio's ColorPicker gives "rgba(r, g, b, a)", with
    fractions, while a colour is dragged. Anything else is passed on to be refused."""
    found = re.fullmatch(r"rgba?\(([^)]*)\)", colour.strip())
    try:
        red, green, blue = (
            min(max(round(float(v)), 0), 255) for v in found.group(1).split(",")[:3]
        )
    except (AttributeError, ValueError):
        return colour
    return f"#{red:02x}{green:02x}{blue:02x}"


def on_look(field: str, value: str, state: dict):
    """One colour or the hair style changed in the look panel."""
    session = _session(state)
    try:
        session.change_look(**{field: value if field == "hair_style" else _as_hex(value)})
    except SessionError as error:
        gr.Warning(html.escape(str(error)))
    return _look(session.card)


def on_tick(state: dict | object, request: gr.Request):
    """The status line while no stream runs (a running stream pushes it with its frames)."""
    if not isinstance(state, dict):  # State not initialised yet for this visitor
        return IDLE_STATUS
    if request.session_hash:
        PAGES[request.session_hash] = state["key"]
    session = _session(state)
    return gr.update() if session.streaming else session.status()


def on_stop(state: dict):
    session = _session(state)
    session.stop()
    return session.status(), *_recording_outputs(session)


RECORD_LABEL, STOP_RECORDING_LABEL = "● Record", "■ Stop recording"
RECORDING_WRITE_WAIT_S = 10.0
"""How long a click waits for a stopped recording's file (its last frames take a moment)."""


def _recording_outputs(session: Session) -> tuple:
    """`_recording_view` of the session, once a recording just stopped is written."""
    if session.recorded is not None:
        session.recorded.finished.wait(timeout=RECORDING_WRITE_WAIT_S)
    return _recording_view(session.recording_state())


def _recording_view(state: tuple[bool, Path | None]) -> tuple:
    """The Record button's label and the download (hidden until there is a file)."""
    recording, path = state
    return (
        gr.update(value=STOP_RECORDING_LABEL if recording else RECORD_LABEL),
        gr.update(value=str(path), visible=True) if path else gr.update(value=None, visible=False),
    )


def on_record(state: dict):
    """Start a recording, or stop the one running and offer its file."""
    session = _session(state)
    try:
        if session.recording is None:
            session.start_recording()
        else:
            session.stop_recording()
    except SessionError as error:
        gr.Warning(html.escape(str(error)))
    return _recording_outputs(session)


def on_send(message: str, state: dict):
    """Not queued: the message shows, and its directive reaches the video, without waiting.
    A message that was not sent stays in the text box."""
    session = _session(state)
    sent = session.send(message)
    return session.chat_history(), "" if sent else gr.update()


def on_follow(state: dict):
    for chat, notices in _session(state).follow():
        for notice in notices:
            gr.Warning(html.escape(notice))
        yield chat


def on_stream_update(update: PageUpdate):
    """What the stream pushes with its frames: the chat (voice turns have no Enter to follow
    them), notices, the status line and the metrics."""
    for notice in update.notices:
        gr.Warning(html.escape(notice))
    parts = (
        update.chat,
        update.status,
        update.metrics,
        update.fps_chart,
        update.latency_chart,
    )
    recording = (
        _recording_view(update.recording) if update.recording else (gr.update(), gr.update())
    )
    return *(gr.update() if part is None else part for part in parts), *recording


def _streams_now() -> int:
    return sum(s.streaming for s in list(SESSIONS.values()))


def on_clear(state: dict):
    session = _session(state)
    session.clear_chat()
    return session.chat_history()


def on_character(name: str, state: dict):
    session = _session(state)
    try:
        session.select_card(name)
    except SessionError as error:
        gr.Warning(html.escape(str(error)))
    return session.chat_history(), *_look(session.card)


def on_upload(path: str | None, state: dict):
    session = _session(state)
    unchanged = (gr.update(), gr.update(), None, *(gr.update() for _ in range(LOOK_PARTS)))
    if not path:
        return unchanged
    try:
        card = session.upload_card(Path(path).read_bytes())
    except SessionError as error:
        gr.Warning(html.escape(str(error)))
        return unchanged
    gr.Info(f"Loaded {html.escape(card.name)}.")  # toasts render HTML
    return (
        session.chat_history(),
        gr.update(choices=list(session.cards), value=session.card_key),
        None,
        *_look(session.card),
    )


def on_pipeline(name: str, state: dict):
    session = _session(state)
    try:
        session.select_pipeline(name)
    except SessionError as error:
        gr.Warning(html.escape(str(error)))
    return gr.update(value=session.pipeline_name)


def on_backend(name: str, state: dict):
    session = _session(state)
    try:
        notice = session.select_backend(name)
    except SessionError as error:
        gr.Warning(html.escape(str(error)))
    else:
        if notice:
            gr.Warning(html.escape(notice))
        else:
            gr.Info(f"Replies now come from the {html.escape(name)} backend.")
    return gr.update(value=session.backend_name)


START_JS = """() => {
  const root = document.querySelector('#persona-video');
  const access = [...root.querySelectorAll('button')].find(b => /Click to Access/.test(b.textContent));
  if (access) access.click();
  const started = Date.now();
  const start = () => {
    const button = root.querySelector('button[aria-label="start stream"]');
    if (button && window.personaMedia.ready) {
      if (button.querySelector('[title="start recording"]')) button.click();
    } else if (Date.now() - started < 5000) setTimeout(start, 50);
  };
  start();
}"""
"""Start presses the stream component's own start button, after its one-time media access
step (which takes a moment). The button starts only when idle, so a double click opens one
connection."""


def build_page() -> gr.Blocks:
    with gr.Blocks(
        title="Persona",
        css_paths=[HERE / "ui" / "style.css"],
        head="".join(
            f"<script>{(HERE / 'ui' / name).read_text()}</script>"
            for name in ("low_latency.js", "media.js")
        ),
        theme=gr.themes.Soft(),
    ) as page:
        state = gr.State(_new_state, delete_callback=_close)
        gr.Markdown(
            "# Persona\nChat with a character who lives in a live video stream. "
            "Press **Start**, then ask them to wave, dance, sit down or look surprised.",
            elem_id="persona-title",
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                video = WebRTC(
                    label="Live",
                    modality="audio-video",
                    mode="send-receive",
                    full_screen=False,
                    elem_id="persona-video",
                    height=512,
                )
                with gr.Row():
                    start = gr.Button("Start", variant="primary", elem_id="start-btn")
                    stop = gr.Button("Stop", elem_id="stop-btn")
                    gr.Button("Talk", elem_id="mic-btn")  # both handled in ui/media.js
                    gr.Button("Mute", elem_id="mute-btn")
                    record = gr.Button(RECORD_LABEL, elem_id="record-btn")
                recording = gr.File(
                    label="Recording", elem_id="recording", visible=False, interactive=False
                )
                gr.HTML("", elem_id="voice-note")
                status = gr.Textbox(  # grows when it wraps (ui/style.css)
                    label="Now showing", interactive=False, elem_id="persona-status"
                )
                with gr.Accordion("Live metrics", open=False, elem_id="metrics"):
                    metrics = gr.Markdown(METRICS_WAITING, elem_id="metrics-table")
                    with gr.Row():
                        fps_chart = gr.HTML(elem_id="metrics-fps")
                        latency_chart = gr.HTML(elem_id="metrics-latency")
            with gr.Column(scale=2):
                chat = gr.Chatbot(type="messages", height=420, elem_id="chat", label="Chat")
                message = gr.Textbox(
                    placeholder="Say something, or ask me to wave…",
                    show_label=False,
                    elem_id="chat-input",
                    submit_btn=True,
                )
                gr.Examples(EXAMPLES, inputs=message, label="Try")
                with gr.Accordion("Character, pipeline and brain", open=False):
                    character = gr.Dropdown(label="Character", elem_id="character-picker")
                    upload = gr.File(
                        label="Upload a character card (.json or .png)",
                        file_types=[".json", ".png"],
                        type="filepath",
                        elem_id="card-upload",
                    )
                    with gr.Accordion("Look", open=False, elem_id="look"):
                        look_note = gr.Markdown(elem_id="look-note")
                        with gr.Row():
                            colours = [
                                gr.ColorPicker(label=label, elem_id=f"look-{field}", min_width=80)
                                for field, label in LOOK_COLOURS.items()
                            ]
                        hair_style = gr.Dropdown(
                            HAIR_STYLES, label="Hair style", elem_id="look-hair-style"
                        )
                    look = [look_note, *colours, hair_style]
                    pipeline = gr.Dropdown(
                        _pipeline_choices(),
                        value=default_pipeline_name(),
                        label="Video pipeline",
                        elem_id="pipeline-picker",
                    )
                    backend = gr.Dropdown(
                        list(BACKENDS),
                        value=default_backend_name(),
                        label="Language backend",
                        elem_id="backend-picker",
                    )

        page.load(on_load, None, [chat, character, status, *look])

        async def on_unload(request: gr.Request) -> None:
            threading.Thread(  # closing waits for the model; never on a shared pool's thread
                target=_close_page, args=(request.session_hash or "",), name="close-page"
            ).start()
            _forget_finished_events(page)

        page.unload(on_unload)
        if _relay_configured():  # a dict set on load: a callable breaks receive mode
            page.load(lambda: gr.update(rtc_configuration=_rtc_configuration()), None, [video])
        video.stream(
            PersonaStream(_session, functools.partial(_drop_connection, video), _streams_now),
            inputs=[video, state],
            outputs=[video],
            concurrency_limit=MAX_STREAMS or sys.maxsize,  # (fastrtc reads None as 1)
            time_limit=None,  # the session ends its stream, and the stream its connection
        )
        video.on_additional_outputs(
            on_stream_update,
            outputs=[chat, status, metrics, fps_chart, latency_chart, record, recording],
            concurrency_limit=None,
            show_progress="hidden",
        )
        start.click(None, js=START_JS)
        # The page's own events: not an HTTP API (they need the page's session state).
        private = {"api_name": False}
        stop.click(on_stop, [state], [status, record, recording], **private)
        record.click(on_record, [state], [record, recording], **private)
        message.submit(on_send, [message, state], [chat, message], queue=False, **private).then(
            on_follow, [state], [chat], concurrency_limit=None, show_progress="hidden", **private
        )
        chat.clear(on_clear, [state], [chat], **private)
        character.input(on_character, [character, state], [chat, *look], **private)
        upload.upload(on_upload, [upload, state], [chat, character, upload, *look], **private)
        for field, control in zip([*LOOK_COLOURS, "hair_style"], look[1:], strict=True):
            control.input(functools.partial(on_look, field), [control, state], look, **private)
        pipeline.input(  # waits for the build: never hold up other visitors' switches
            on_pipeline, [pipeline, state], [pipeline], concurrency_limit=None, **private
        )
        backend.input(on_backend, [backend, state], [backend], **private)
        # Not queued: gradio's queue keeps every event's finished task for good (5.50:
        # Queue._asyncio_tasks), four a second for as long as a page is open.
        gr.Timer(0.25).tick(
            on_tick, [state], [status], queue=False, show_progress="hidden", **private
        )
    return page


def build_app() -> FastAPI:
    server = FastAPI()

    @server.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "ready": MODELS_LOADED.is_set(),
            "pipelines": [{"name": s.name, "available": s.available} for s in stream_pipelines()],
            "max_streams": MAX_STREAMS,
            "sessions": len(SESSIONS),
            "streaming": _streams_now(),
            "downloads": [p.describe() for p in downloads_under_way()],
            "pipelines_on": f"ray {ray_address()}" if ray_address() else "this process",
            **({"cluster": cluster_report()} if ray_address() else {}),
        }

    return gr.mount_gradio_app(server, build_page(), path="/", max_file_size=MAX_CARD_BYTES)


def _fewer_malloc_arenas() -> None:
    """glibc gives busy threads malloc arenas of their own and seldom returns what is freed in
    them: over 100 visits the server's RSS grew 112 MB with its default, 56 MB with two
    (benchmarks/reliability.py). Threads started after this call share the two; a
    MALLOC_ARENA_MAX set by the host wins, and other C libraries are left alone."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    import ctypes

    m_arena_max = -8  # from glibc's malloc.h
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(m_arena_max, 2)


def _open_share_link(host: str, port: int) -> None:
    """A public gradio.live link to this server, as gradio's own `share=True` makes (the app
    runs its own uvicorn, so gradio's launch cannot). Without internet it says so, and the
    server goes on locally."""
    from gradio.networking import setup_tunnel

    local = "127.0.0.1" if host in ("0.0.0.0", "") else host
    try:
        link = setup_tunnel(local, port, secrets.token_urlsafe(32), None, None)
    except Exception as error:
        log.warning(
            "could not create a share link (%s: %s); serving on http://%s:%d only. A share "
            "link needs internet access to gradio.live.",
            type(error).__name__,
            error,
            local,
            port,
        )
        return
    relay = "set" if _relay_configured() else "NOT set: set PERSONA_TURN_URLS or HF_TOKEN"
    log.info("share link: %s (WebRTC through it needs a TURN relay: %s)", link, relay)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Persona: chat with a character who lives in a real-time video stream.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to serve on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="port to serve on (default 7860)",
    )
    parser.add_argument(
        "--share",
        action="store_true",
        default=os.environ.get("GRADIO_SHARE", "").lower() in ("1", "true"),
        help="also serve through a public gradio.live link (needs internet, and a TURN relay "
        "for the video: see PERSONA_TURN_URLS and HF_TOKEN)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    import uvicorn

    arguments = _arguments()
    _fewer_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    threading.Thread(target=_preload_models, name="load-models", daemon=True).start()
    if arguments.share:
        threading.Thread(
            target=_open_share_link, args=(arguments.host, arguments.port), daemon=True
        ).start()
    uvicorn.run(build_app(), host=arguments.host, port=arguments.port, log_level="warning")
