"""The video layer: the Pipeline interface, registry, conditioning vocabulary and stream runner.

Never imports `persona` or `gradio` (a test enforces it); heavy libraries load lazily, only
when a pipeline that needs them is built.
"""
