"""The demo orchestrator: the demo pipeline as a tree of ordinary jobs (above every domain app)."""
