"""Pure numerical core of Latent Sky.

Nothing in this package imports Django or Celery: every module works on
numpy arrays / torch tensors and plain dataclasses, so it can be tested on
tiny arrays and reused from notebooks or other services.
"""
