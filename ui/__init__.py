"""The web page's pieces: the per-session controller and the page's stylesheet.

The one package that imports both `persona` and `pipelines`; `app.py` wires it to gradio.
"""
