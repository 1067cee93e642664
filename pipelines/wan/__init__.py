"""`wan`: streaming autoregressive Wan2.1 video (Self-Forcing / LongLive class), GPU only.

Light on purpose: importing this package loads no torch, so `python -m pipelines list` stays
fast. So far it holds only the few-step sampling schedule (`schedule.py`); the causal
transformer, KV cache, text encoder, streaming VAE decode and the Pipeline are not written yet.
"""
