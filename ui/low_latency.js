// Ask the browser to play the live video as soon as frames arrive.
// WebRTC receivers keep a jitter buffer tuned for calls over the internet; for a character
// that must react within a fraction of a second, a zero target lets the browser shrink it to
// what the network actually needs. Wraps RTCPeerConnection so FastRTC's connections get it.
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  function LowLatencyPeerConnection(...args) {
    const pc = new Native(...args);
    pc.addEventListener("track", (event) => {
      const receiver = event.receiver;
      if ("jitterBufferTarget" in receiver) receiver.jitterBufferTarget = 0;
      else if ("playoutDelayHint" in receiver) receiver.playoutDelayHint = 0;
    });
    return pc;
  }
  LowLatencyPeerConnection.prototype = Native.prototype;
  window.RTCPeerConnection = LowLatencyPeerConnection;
})();
