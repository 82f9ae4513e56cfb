"""Celery workers for Latent Sky: ``celery -A workers worker -Q default,cpu`` (or ``-Q gpu``)."""
from workers.celery import app

__all__ = ["app"]
