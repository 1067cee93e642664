"""The conversational layer: character cards, conversation, interpreter backends, character state.

Imports only the type-only `pipelines.conditioning` from the video layer (a test enforces it);
torch and transformers load lazily, when the offline interpreter or an LLM backend is first used.
"""
