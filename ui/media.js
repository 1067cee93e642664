// The page's side of the media connection (ui/media.py): what it sends, the mic and mute
// buttons, and sound the browser's autoplay policy holds back.
//
// FastRTC's send-receive component asks for a camera and a microphone when the stream starts.
// Persona needs neither to start: the wrapper below answers that request with a silent audio
// track and a tiny blank canvas track (the server only sends back a kind the page sends), so
// nothing is asked of a visitor who types. The mic button swaps the real microphone into the
// live connection (RTCRtpSender.replaceTrack: no renegotiation) and back. Peer connections are
// closed when the tab goes away, so the server frees the stream at once instead of ~30 s later.
(() => {
  if (window.personaMedia) return;
  // A page served over plain http from another machine has no mediaDevices (a secure-context
  // API): the stream still starts, with placeholder tracks, and the mic says why it cannot.
  if (!navigator.mediaDevices) {
    Object.defineProperty(navigator, "mediaDevices", { value: { enumerateDevices: async () => [] } });
  }
  const devices = navigator.mediaDevices;
  const askBrowser = devices.getUserMedia ? devices.getUserMedia.bind(devices) : async () => {
    throw new DOMException("the microphone needs a secure page, https or localhost", "NotSupportedError");
  };
  const live = new Set();
  let newest = null;  // the page's latest connection: an older one ending says nothing
  let stoppedAt = -Infinity;
  const stopPressed = () => performance.now() - stoppedAt < 3000;  // the visitor's own Stop
  document.addEventListener("click", (event) => {
    if (event.target instanceof Element && event.target.closest("#stop-btn")) stoppedAt = performance.now();
  }, true);
  const Native = window.RTCPeerConnection;
  function TrackedPeerConnection(...args) {
    const pc = new Native(...args);
    live.add(pc);
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "closed" || pc.connectionState === "failed") live.delete(pc);
      if (pc.connectionState === "failed") sayOverVideo(NO_ROUTE);
      if (pc.connectionState === "connected") sayOverVideo(null);
    });
    // The server ended the stream (its worker stopped, no worker was free, time was up): its
    // reason stays over the video with a retry, where the component's toast would fade.
    const createDataChannel = pc.createDataChannel.bind(pc);
    pc.createDataChannel = (...options) => {
      const channel = createDataChannel(...options);
      channel.addEventListener("message", (event) => {
        let message = null;
        try { message = JSON.parse(event.data); } catch { return; }
        if (message && message.type === "end_stream" && pc === newest && !stopPressed()) {
          sayOverVideo(message.data);
        }
      });
      return channel;
    };
    newest = pc;
    setTimeout(() => {  // answered, yet never connected (no route found, nor failed: no candidates)
      if (live.has(pc) && pc.remoteDescription && pc.connectionState !== "connected") {
        sayOverVideo(NO_ROUTE);
      }
    }, CONNECT_TIMEOUT_MS);
    return pc;
  }
  TrackedPeerConnection.prototype = Native.prototype;
  window.RTCPeerConnection = TrackedPeerConnection;
  window.addEventListener("pagehide", () => live.forEach((pc) => pc.close()));

  const MIC = { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 };
  const media = (window.personaMedia = { wantMic: false, mic: null, silence: null, ready: false });
  const byId = (id) => document.getElementById(id);
  const note = (text) => { const el = byId("voice-note"); if (el) el.textContent = text; };
  const label = (id, text) => {
    const button = byId(id);
    if (button) button.textContent = text;
  };

  function silentTrack() {
    // Silence that is still sent (a source playing zeros; an unconnected destination sends
    // no packets): it tells the server the page is there, 50 times a second, and unlike the
    // canvas it is not slowed down when the tab is in the background.
    if (!media.silence || media.silence.readyState === "ended") {
      const context = new AudioContext();
      const destination = context.createMediaStreamDestination();
      const zeros = context.createConstantSource();
      zeros.offset.value = 0;
      zeros.connect(destination);
      zeros.start();
      media.silence = destination.stream.getAudioTracks()[0];
    }
    return media.silence;
  }

  function blankVideoTrack() {
    const canvas = Object.assign(document.createElement("canvas"), { width: 16, height: 16 });
    const paint = canvas.getContext("2d");
    paint.fillRect(0, 0, 16, 16);
    const track = canvas.captureStream(1).getVideoTracks()[0];
    const timer = setInterval(() => {
      if (track.readyState === "ended") clearInterval(timer);
      else paint.fillRect(0, 0, 16, 16);  // a captured canvas sends frames only when painted
    }, 1000);
    return track;
  }

  async function microphone() {
    if (!media.mic || media.mic.readyState === "ended") {
      const stream = await askBrowser({ audio: MIC });
      media.mic = stream.getAudioTracks()[0];
      watchMicrophone(media.mic);
    }
    return media.mic;
  }

  // The component lists devices right after it gets its tracks and only then keeps them for
  // the connection: `ready` says a Start press now would send them.
  const listDevices = devices.enumerateDevices.bind(devices);
  devices.enumerateDevices = async () => {
    const found = await listDevices();
    setTimeout(() => { media.ready = true; }, 0);
    return found;
  };

  devices.getUserMedia = async (constraints) => {
    if (!constraints || !constraints.video) return askBrowser(constraints);
    media.ready = false;
    let audio = silentTrack();
    if (media.wantMic) audio = await microphone().catch(() => silentTrack());
    return new MediaStream([audio, blankVideoTrack()]);
  };

  function audioSender() {
    for (const pc of live) {
      if (pc.connectionState !== "connected") continue;
      const sender = pc.getSenders().find((s) => s.track && s.track.kind === "audio");
      if (sender) return sender;
    }
    return null;
  }

  // Ducking: the moment the visitor's microphone hears speech, the character's voice is
  // silenced here, without waiting for the server's voice detection and the video-synced
  // audio already on its way (a few hundred ms); the server then cuts the reply itself. The
  // voice comes back when the visitor has been quiet for a moment (a cough is only a gap).
  const DUCK_LEVEL = 0.03, DUCK_AFTER = 2, RESTORE_MS = 600;
  function watchMicrophone(track) {
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 512;
    context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    let loud = 0, quietSince = 0;
    const timer = setInterval(() => {
      if (track.readyState === "ended") { clearInterval(timer); context.close(); duck(false); return; }
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const x of samples) sum += x * x;
      const talking = Math.sqrt(sum / samples.length) > DUCK_LEVEL;
      loud = talking ? loud + 1 : 0;
      if (loud >= DUCK_AFTER) { duck(true); quietSince = 0; }
      else if (!talking && media.ducked) {
        quietSince = quietSince || performance.now();
        if (performance.now() - quietSince > RESTORE_MS) duck(false);
      }
    }, 20);
  }
  function duck(on) {
    const el = video();
    media.ducked = on;
    if (el) el.volume = on ? 0 : 1;
  }

  media.toggleMic = async () => {
    if (media.wantMic) {
      media.wantMic = false;
      const sender = audioSender();
      if (sender) await sender.replaceTrack(silentTrack());
      if (media.mic) media.mic.stop();
      media.mic = null;
      label("mic-btn", "Talk");
      note("Microphone off.");
      return;
    }
    let track;
    try {
      track = await microphone();
    } catch (error) {
      note(`No microphone: ${error.message || error.name}. Type your messages instead.`);
      label("mic-btn", "No microphone");
      return;
    }
    media.wantMic = true;
    const sender = audioSender();
    if (sender) await sender.replaceTrack(track);
    label("mic-btn", "Listening… (click to stop)");
    note(sender ? "Listening: just talk. Talking over the character interrupts it." :
      "Microphone on: press Start to talk with the character.");
  };

  function video() { return document.querySelector("#persona-video video"); }

  media.toggleMute = () => {
    const el = video();
    if (!el) return;
    el.muted = !el.muted;
    if (!el.muted) el.play().catch(() => {});
    label("mute-btn", el.muted ? "Unmute" : "Mute");
    if (!el.muted) note("");
  };

  // Every stream slot taken: the component's own toast fades in seconds and leaves a black
  // video, so the refusal is said over the video until a stream starts, with a retry button.
  // The component asks for its connection through gradio's component server (fetch).
  const nativeFetch = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const response = await nativeFetch(...args);
    const url = String((args[0] && args[0].url) || args[0]);
    if (url.includes("component_server")) {
      response.clone().json().then((answer) => {
        if (answer && answer.sdp) sayOverVideo(null);  // a stream was let in
        else if (answer && answer.meta && answer.meta.error === "concurrency_limit_reached") {
          const limit = answer.meta.limit;
          sayOverVideo((limit === 1 ? "The one stream this server runs is" :
            `All ${limit} streams are`) + " in use right now. Try again in a minute.");
        }
      }).catch(() => {});
    }
    return response;
  };
  // A connection that fails after it was let in: ICE found no route between the page and the
  // server, which is what a NAT or a share link does without a TURN relay.
  const CONNECT_TIMEOUT_MS = 15000;
  const NO_ROUTE = "The video could not connect through your network. A TURN relay gets it " +
    "through (the server's owner sets PERSONA_TURN_URLS, or HF_TOKEN on a Space). Try again, " +
    "or from another network.";
  // Said over the video, with a retry, until a stream starts (null takes it away).
  function sayOverVideo(text) {
    let panel = byId("stream-busy");
    if (text == null) { if (panel) panel.remove(); return; }
    if (!panel) {
      panel = Object.assign(document.createElement("div"), { id: "stream-busy" });
      panel.setAttribute("role", "alert");
      panel.append(document.createElement("p"), Object.assign(document.createElement("button"), { type: "button", textContent: "Try again" }));
      byId("persona-video").append(panel);
    }
    panel.querySelector("p").textContent = text;
  }

  // The buttons act in the click itself (not through a gradio event, which drops a second
  // click while the first is pending).
  document.addEventListener("click", (event) => {
    if (!(event.target instanceof Element)) return;
    if (event.target.closest("#mute-btn")) media.toggleMute();
    else if (event.target.closest("#mic-btn")) media.toggleMic();
    else if (event.target.closest("#stream-busy button")) tryAgain();
  });

  // Try again: end an attempt still waiting for a route (the stream's button then says
  // "Waiting" and Start would not press it), then start afresh.
  function tryAgain() {
    const button = document.querySelector('#persona-video button[aria-label="start stream"]');
    if (button && !button.querySelector('[title="start recording"]')) button.click();
    byId("start-btn").click();  // presses the stream's button once it is idle again
  }

  // Sound held back by the autoplay policy: play muted, and say how to hear it.
  setInterval(() => {
    const el = video();
    if (!el || !el.srcObject || !el.paused || el.muted || el.dataset.personaTried) return;
    el.dataset.personaTried = "1";
    el.play().catch(() => {
      el.muted = true;
      el.play().catch(() => {});
      label("mute-btn", "Click to unmute");
      note('Your browser held back the sound: press "Click to unmute" to hear the character.');
    });
  }, 500);
})();
