"""`wan`: streaming autoregressive Wan2.1 video (Self-Forcing / LongLive class), GPU only.

Light on purpose: importing this package loads no torch, so `python -m pipelines list` stays
fast. `schedule.py` holds the few-step sampling schedule, `text.py` the prompts and umT5
embeddings, `vae.py` / `tiny_vae.py` the streaming decoders and `loading.py` where weights
come from; the causal transformer, KV cache and the Pipeline itself are not written yet.
"""
