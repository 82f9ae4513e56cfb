"""The "ingest" job: the browser's way into services.ingest (queue "cpu").

Params are the form's (see forms.IngestForm.job_params): ``format``, ``path`` and
ingest options.  The path (and a catalogue path) must lie under
settings.INGEST_ROOTS; this is checked again here because a job row can be
created by other code than the form.  The result is IngestReport.as_result():
counts plus at most 200 "file: reason" lines.  The job fails, with the first
problems in its message, when no object could be ingested.
"""
from __future__ import annotations

from webapp.catalog.services.ingest import build_options, ingest, resolve_allowed_path


def run_ingest_job(job, progress) -> dict:
    params = {k: v for k, v in (job.params or {}).items() if not k.startswith("_")}
    raw_path = params.pop("path", "")
    path = resolve_allowed_path(raw_path)
    fmt, options = build_options(params)
    for name in filter(None, options.catalog.split(",")):
        resolve_allowed_path(name.strip(), base=path if path.is_dir() else path.parent)
    progress(0, 1, f"reading {path.name}")
    report = ingest(fmt, path, options, progress=progress)
    return report.as_result()
