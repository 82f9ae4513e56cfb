"""Latent Sky from Python: surveys, galaxies, similarity search, maps, anomalies, labeling, jobs.

    from latentsky import Client
    sky = Client("http://127.0.0.1:8000", token="lsk_...")   # or $LATENTSKY_URL, $LATENTSKY_TOKEN
    sky.neighbours(1234)                                     # an astropy Table
"""
from latentsky.client import Client, Job
from latentsky.errors import (AuthenticationFailed, BadRequest, Conflict, JobFailed, LatentSkyError, NotFound,
                              PermissionDenied, ServerError, TooLarge)

__version__ = "0.1.0"
__all__ = ["Client", "Job", "LatentSkyError", "BadRequest", "AuthenticationFailed", "PermissionDenied", "NotFound",
           "Conflict", "TooLarge", "ServerError", "JobFailed"]
