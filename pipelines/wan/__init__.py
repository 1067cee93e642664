"""`wan`: streaming autoregressive Wan2.1 video (Self-Forcing / LongLive class), GPU only.

Light on purpose: importing this package loads no torch, so `python -m pipelines list` stays
fast; import the modules you need. `schedule.py` is the few-step sampling schedule;
`transformer.py` the block-causal, KV-cached transformer (`CausalWanTransformer`, diffusers'
parameter names; its layers in `layers.py`); `cache.py` its typed KV cache (`WanKVCache`:
attention sink + rolling window, per-prompt cross-attention K/V); `weights.py` the key tables
that load original Wan / Self-Forcing / LongLive (+LoRA) checkpoints; `text.py` the prompts and
umT5 embeddings; `vae.py` / `tiny_vae.py` the streaming decoders; `loading.py` where weights
come from. The Pipeline itself is written elsewhere.
"""
