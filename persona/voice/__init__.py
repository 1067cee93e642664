"""The character's voice, out and in: speech synthesis with mouth shapes (`tts`, `mouth`),
when it speaks what (`schedule`), voice activity (`vad`) and speech recognition (`stt`).

Knows nothing about WebRTC or the page (`ui/media.py` carries the sound).
"""


def preload_voice() -> None:
    """Load the speech engines once, before anyone talks."""
    from persona.voice.stt import shared_transcriber
    from persona.voice.tts import shared_speaker
    from persona.voice.vad import SpeechDetector

    shared_speaker().say("Hello.")  # loads the voice and its pronunciation dictionary
    shared_transcriber()
    SpeechDetector()
