"""Drive the real app in headless Chromium: start it, open pages, watch the WebRTC video.

Shared by the browser tests and `benchmarks/app_latency.py`. The page-side probe wraps
`RTCPeerConnection` to see the connection state, samples every presented video frame with
`requestVideoFrameCallback` into a 64x64 canvas, and timestamps (with `performance.now()`)
when the status line first shows an expected text, so latencies are measured inside the page.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
QUIET = 0.003
"""RMS of the page's sound below which the character is silent."""
CHANGE_THRESHOLD = 0.02
"""Fraction of 64x64 probe pixels that must change (by > 40 levels) to count as a new pose."""
CHAT_MESSAGE = "#chat .message:not(:has(.message))"
"""One chat message (gradio nests a `.message` panel inside each `.message` row)."""
MOVE_THRESHOLD = 0.008
"""Fraction that counts as the first visible movement: above what idle sway and blinks change
in 0.3 s (at most 0.5% measured), below what an arm-only gesture like a wave ever reaches
against its first frame (the 2% of a new pose can take a second, or be first met by sway)."""

PROBE = """
(() => {
  window.__pcs = [];
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
  const probe = window.__probe = { frames: [], reference: null, watching: [] };
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 64;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  function gray() {
    const d = ctx.getImageData(0, 0, 64, 64).data, g = new Uint8Array(4096);
    for (let i = 0; i < 4096; i++) g[i] = (d[4*i] + d[4*i+1] + d[4*i+2]) / 3;
    return g;
  }
  const face = document.createElement('canvas');
  face.width = face.height = 96;
  const faceCtx = face.getContext('2d', { willReadFrequently: true });
  function mouthArea(video) {
    // Pixels of the face crop (a standing puppet's mouth area) in the colours the puppet
    // draws its lips, the dark inside of an open mouth and its tongue: grows as it opens.
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return 0;
    faceCtx.drawImage(video, 0.40 * w, 0.24 * h, 0.22 * w, 0.18 * h, 0, 0, 96, 96);
    const d = faceCtx.getImageData(0, 0, 96, 96).data;
    let area = 0;
    for (let i = 0; i < d.length; i += 4) {
      const r = d[i], g = d[i + 1], b = d[i + 2];
      const tongue = r > 185 && g > 80 && g < 150 && b > 90 && b < 160 && r - g > 70;
      const mouth = r > 60 && r < 130 && g < 50 && b < 60 && r - g > 40;
      area += tongue || mouth;
    }
    return area;
  }
  function onFrame(video) {
    video.requestVideoFrameCallback((now) => {
      ctx.drawImage(video, 0, 0, 64, 64);
      const g = gray();
      let changed = 0;
      if (probe.reference) for (let i = 0; i < 4096; i++) changed += Math.abs(g[i] - probe.reference[i]) > 40;
      probe.frames.push({ t: now, changed: changed / 4096, mean: g.reduce((a, b) => a + b, 0) / 4096,
                          mouth: mouthArea(video) });
      if (probe.frames.length > 20000) probe.frames.splice(0, 5000);  // 11 min (3000 dropped a 2-min talk's start)
      probe.last = g;
      onFrame(video);
    });
  }
  probe.markReference = () => { probe.reference = probe.last; return performance.now(); };
  probe.watch = (text) => { const w = { text, t: null }; probe.watching.push(w); return probe.watching.length - 1; };
  function poll() {
    const status = document.querySelector('#persona-status textarea, #persona-status input');
    for (const w of probe.watching) if (w.t === null && status && status.value.includes(w.text)) w.t = performance.now();
    requestAnimationFrame(poll);
  }
  poll();
  function loudness(stream, into, gain = () => 1) {
    // The RMS of a stream's sound every 20 ms (times `gain`), pushed into `into` as {t, rms}.
    const audio = new AudioContext();
    const analyser = audio.createAnalyser();
    analyser.fftSize = 512;
    audio.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const x of samples) sum += x * x;
      into.push({ t: performance.now(), rms: gain() * Math.sqrt(sum / samples.length) });
      if (into.length > 30000) into.splice(0, 10000);  // 10 min (6000 dropped a 2-min talk's start)
    }, 20);
  }
  probe.sound = [];
  probe.mic = [];
  probe.heard = [];
  probe.listen = () => {
    // What the page receives (`sound`) and what the visitor hears of it (`heard`: after the
    // video element's mute and volume).
    const video = document.querySelector('#persona-video video');
    loudness(video.srcObject, probe.sound);
    loudness(video.srcObject, probe.heard, () => (video.muted ? 0 : video.volume));
  };
  probe.listenToMic = () => loudness(new MediaStream([window.personaMedia.mic]), probe.mic);
  const attach = setInterval(() => {
    const video = document.querySelector('#persona-video video');
    if (video && !video.__probed) { video.__probed = true; onFrame(video); }
  }, 50);
})();
"""


def machine_address() -> str:
    """The address WebRTC uses here (not loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (the app started by `running_app`), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def running_app(**env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `python app.py` on this machine's address; yield (url, process)."""
    host, port = machine_address(), free_port()
    environment = {
        **os.environ,
        "GRADIO_SERVER_NAME": host,
        "GRADIO_SERVER_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        **env,
    }
    log = tempfile.NamedTemporaryFile("w+", prefix="persona-app-", suffix=".log")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process.log_path = log.name  # type: ignore[attr-defined]
    url = f"http://{host}:{port}"
    try:
        import urllib.request

        deadline = time.monotonic() + 180  # a fresh install compiles and loads everything
        while True:  # until it serves, with its models loaded
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if json.loads(response.read())["ready"]:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"app did not start:\n{Path(log.name).read_text()}")
            time.sleep(0.3)
        yield url, process
    finally:
        _stop(process, timeout_s=10)
        log.close()


def _stop(process: subprocess.Popen, timeout_s: float) -> None:
    """Ask a process to end (SIGTERM); kill it if it has not within `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def ray_cluster(cpus: int = 2, worker_nodes: int = 0, worker_cpus: int = 1) -> Iterator[str]:
    """A local Ray cluster, started with `ray start` as the README says, bound to this
    machine's address, with token authentication (Ray's default): a head node with `cpus`
    CPUs and `worker_nodes` more nodes of `worker_cpus` each. Yields its address, for
    `PERSONA_RAY_ADDRESS` with `RAY_AUTH_MODE=token`; stopped, all its processes, on exit."""
    host, port = machine_address(), free_port()
    address = f"{host}:{port}"
    ray = str(Path(sys.executable).with_name("ray"))
    common = ["--block", f"--node-ip-address={host}", "--disable-usage-stats"]
    environment = {**os.environ, "RAY_AUTH_MODE": "token"}

    def node(*arguments: str) -> subprocess.Popen:
        return subprocess.Popen(
            [ray, "start", *common, *arguments],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def nodes_alive() -> int:
        count = (
            "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False);"
            " print(sum(n['Alive'] for n in ray.nodes()))"
        )
        answer = subprocess.run(
            [sys.executable, "-c", count, address], env=environment, capture_output=True
        )
        return int(answer.stdout.split()[0]) if answer.returncode == 0 else 0

    processes = [
        node("--head", f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false")
    ]
    try:
        deadline = time.monotonic() + 90
        while (alive := nodes_alive()) < 1 + worker_nodes:
            if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                exits = [p.poll() for p in processes]
                raise RuntimeError(f"the Ray cluster did not start: {alive} nodes up, {exits}")
            if alive == len(processes):  # the next worker joins once the last is up (two
                # starting together can pick the same free port: "Address already in use")
                processes.append(node(f"--address={address}", f"--num-cpus={worker_cpus}"))
            time.sleep(0.5)
        yield address
    finally:
        for process in reversed(processes):  # `ray start --block` stops its node's processes
            _stop(process, timeout_s=30)


def fake_microphone(wav: Path, app_url: str) -> list[str]:
    """Chromium arguments for a microphone that plays `wav` once, allowed without a prompt on
    the app's plain-http address (the microphone is a secure-context API)."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        f"--unsafely-treat-insecure-origin-as-secure={app_url}",
    ]


@contextmanager
def chromium(*extra_args: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(extra_args)
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def killable_chromium(browser: object) -> Iterator[tuple[object, Callable[[], None]]]:
    """A second Chromium, beside `browser`, and a function that kills it outright (SIGKILL:
    no pagehide, no goodbye), as a crashed browser or a lost network leaves a server."""
    import psutil

    marker = f"--persona-killable-browser={uuid.uuid4().hex}"  # Chromium ignores unknown flags
    doomed = browser.browser_type.launch(  # type: ignore[attr-defined]
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, marker]
    )

    def kill() -> None:
        for process in psutil.process_iter(["cmdline"]):
            if marker in (process.info["cmdline"] or []):
                process.kill()

    try:
        yield doomed, kill
    finally:
        with suppress(Exception):  # Playwright cannot close a killed browser
            doomed.close()


def health(url: str) -> dict:
    """The app's `/health` answer."""
    with urllib.request.urlopen(url + "/health", timeout=5) as response:
        return json.loads(response.read())


def barge_in_ms(played: list[tuple[float, float]], spoke: float) -> float:
    """Ms from the visitor starting to speak to the character's last sound before a silence
    of at least 500 ms (inf if it never fell silent)."""
    loud = [t for t, rms in played if rms >= QUIET]
    after = [t for t in loud if t >= spoke]
    for earlier, later in zip([spoke, *after], [*after, played[-1][0] + 1000], strict=True):
        if later - earlier >= 500:
            return earlier - spoke
    return float("inf")


class PersonaPage:
    """One visitor's page."""

    def __init__(self, browser: object, url: str, init_scripts: list[str] = ()) -> None:
        self.page = browser.new_page()  # type: ignore[attr-defined]
        for script in [PROBE, *init_scripts]:
            self.page.add_init_script(script)
        self.page.goto(url)
        self.page.wait_for_selector("#start-btn")
        self.page.wait_for_function(  # the session exists once the status names the pipeline
            "(() => { const s = document.querySelector('#persona-status textarea');"
            " return s && s.value.includes(' on '); })()"
        )

    def start(self, timeout_s: float = 30) -> None:
        self.page.click("#start-btn")
        self.page.wait_for_function(
            "window.__pcs.some(pc => pc.connectionState === 'connected')", timeout=timeout_s * 1000
        )
        self.page.wait_for_function(
            "(() => { const v = document.querySelector('#persona-video video');"
            " return v && !v.paused && v.readyState >= 2 && window.__probe.frames.length > 10; })()",
            timeout=timeout_s * 1000,
        )

    def stop(self) -> None:
        self.page.click("#stop-btn")

    def choose(self, elem_id: str, value: str) -> None:
        """Pick `value` in a gr.Dropdown (opening the settings accordion if it is closed)."""
        field = self.page.locator(f"#{elem_id} input")
        if not field.is_visible():
            self.page.get_by_text("Character, pipeline and brain").click()
        field.click()
        self.page.locator(f"li[role=option][aria-label='{value}']").click()

    def connected(self) -> bool:
        return self.page.evaluate("window.__pcs.some(pc => pc.connectionState === 'connected')")

    def status(self) -> str:
        return self.page.input_value("#persona-status textarea")

    def over_video(self) -> str:
        """What is said over the video (a refusal, an ended stream, no route), or ""."""
        panel = self.page.locator("#persona-video #stream-busy p")
        return panel.inner_text() if panel.count() else ""

    def wait_until_live(self, timeout_s: float = 30) -> None:
        """Until the status line says the pipeline's own frames are playing (after `start`,
        the placeholder plays while the pipeline loads)."""
        self.page.wait_for_function(
            "(document.querySelector('#persona-status textarea') || {}).value?.startsWith('live')",
            timeout=timeout_s * 1000,
        )

    def fps(self, seconds: float = 3.0) -> float:
        first = self.page.evaluate("window.__probe.frames.length")
        self.page.wait_for_timeout(seconds * 1000)
        frames = self.page.evaluate(
            f"window.__probe.frames.slice(-Math.max(2, window.__probe.frames.length - {first}))"
        )
        if len(frames) < 2:
            return 0.0
        return (len(frames) - 1) / ((frames[-1]["t"] - frames[0]["t"]) / 1000)

    def send(
        self, text: str, expect_status: str, timeout_s: float = 10, new_pose_s: float = 3
    ) -> dict[str, float | None]:
        """Type a message, press Enter; return ms from Enter to the status showing
        `expect_status`, to the first video frame that visibly moves, and to the first that
        differs from the frame before Enter as a new pose (each None if no frame does within
        `new_pose_s` of the status: an arm-only gesture on a small, soft video may not)."""
        watch = self.page.evaluate(f"window.__probe.watch({expect_status!r})")
        self.page.fill("#chat-input textarea", text)
        enter = self.page.evaluate("window.__probe.markReference()")
        self.page.press("#chat-input textarea", "Enter")

        def first_frame_over(threshold: float, wait_s: float) -> float | None:
            found = f"window.__probe.frames.find(f => f.t > {enter} && f.changed > {threshold})"
            try:
                self.page.wait_for_function(f"{found} !== undefined", timeout=wait_s * 1000)
            except PlaywrightTimeout:
                return None
            return self.page.evaluate(f"{found}.t") - enter

        self.page.wait_for_function(
            f"window.__probe.watching[{watch}].t !== null", timeout=timeout_s * 1000
        )
        return {
            "status_ms": self.page.evaluate(f"window.__probe.watching[{watch}].t") - enter,
            "moved_frame_ms": first_frame_over(MOVE_THRESHOLD, new_pose_s),
            "changed_frame_ms": first_frame_over(CHANGE_THRESHOLD, new_pose_s),
        }

    def idle_change(self, seconds: float = 1.5) -> float:
        """The most the idle video changes from a reference frame over a while (the noise floor)."""
        start = self.page.evaluate("window.__probe.markReference()")
        self.page.wait_for_timeout(seconds * 1000)
        return self.page.evaluate(
            f"Math.max(0, ...window.__probe.frames.filter(f => f.t > {start}).map(f => f.changed))"
        )

    def listen(self) -> None:
        """Start measuring how loud the page's sound is (after `start`)."""
        self.page.evaluate("window.__probe.listen()")

    def now(self) -> float:
        return self.page.evaluate("performance.now()")

    def talk(self) -> None:
        """Turn the page's microphone on (a fake one plays its file) and measure its loudness."""
        self.page.click("#mic-btn")
        self.page.wait_for_function("window.personaMedia.mic && window.personaMedia.wantMic")
        self.page.evaluate("window.__probe.listenToMic()")

    def sound(self, since: float, source: str = "sound") -> list[tuple[float, float]]:
        """[(page ms, RMS)] every 20 ms since `since`: what the page received (`sound`), what
        the visitor heard of it (`heard`), or what its microphone picked up (`mic`)."""
        rows = self.page.evaluate(f"window.__probe.{source}.filter(s => s.t > {since})")
        return [(row["t"], row["rms"]) for row in rows]

    def loudest(self, since: float) -> float:
        """The loudest 20 ms of sound the page played since `since` (RMS, 0..1)."""
        return self.page.evaluate(
            f"Math.max(0, ...window.__probe.sound.filter(s => s.t > {since}).map(s => s.rms))"
        )

    def wait_for_sound(self, since: float, level: float = 0.02, timeout_s: float = 30) -> float:
        """When (page ms) the page first played sound above `level` after `since`."""
        found = f"window.__probe.sound.find(s => s.t > {since} && s.rms > {level})"
        self.page.wait_for_function(f"{found} !== undefined", timeout=timeout_s * 1000)
        return self.page.evaluate(f"{found}.t")

    def mouth_areas(self, since: float, until: float) -> list[float]:
        """The mouth's area (probe pixels) in each frame shown between the two times."""
        return self.page.evaluate(
            f"window.__probe.frames.filter(f => f.t > {since} && f.t < {until}).map(f => f.mouth)"
        )

    def pixels_near(self, colour: str, tolerance: float = 30) -> int:
        """How many pixels of the video's current frame, drawn at 128x128, lie within
        `tolerance` (RGB distance) of `colour` (#rrggbb)."""
        return self.page.evaluate(
            """([hex, tolerance]) => {
              const target = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
              const canvas = document.createElement('canvas');
              canvas.width = canvas.height = 128;
              const ctx = canvas.getContext('2d');
              ctx.drawImage(document.querySelector('#persona-video video'), 0, 0, 128, 128);
              const d = ctx.getImageData(0, 0, 128, 128).data;
              let near = 0;
              for (let i = 0; i < d.length; i += 4) {
                const dr = d[i] - target[0], dg = d[i + 1] - target[1], db = d[i + 2] - target[2];
                if (dr * dr + dg * dg + db * db <= tolerance * tolerance) near++;
              }
              return near;
            }""",
            [colour, tolerance],
        )

    def wait_for_colour(self, colour: str, pixels: int = 300, timeout_s: float = 10) -> int:
        """Wait until the video shows at least `pixels` near `colour`; return how many it shows."""
        deadline = time.monotonic() + timeout_s
        while (near := self.pixels_near(colour)) < pixels and time.monotonic() < deadline:
            self.page.wait_for_timeout(200)
        return near

    def chat_messages(self) -> list[str]:
        return self.page.locator(CHAT_MESSAGE).all_inner_texts()

    def wait_for_messages(
        self, count: int, *, exactly: bool = False, timeout_s: float = 30
    ) -> None:
        """Wait until the chat shows `count` messages (at least, or exactly)."""
        compare = "===" if exactly else ">="
        self.page.wait_for_function(
            f"document.querySelectorAll({CHAT_MESSAGE!r}).length {compare} {count}",
            timeout=timeout_s * 1000,
        )

    def close(self) -> None:
        self.page.close()
