"""BokehJS from the installed bokeh package as static files (pages never need a CDN).

Only the minified bundles, at ``bokeh/static/js/<name>.min.js``: the package's folder also holds
the TypeScript compiler and type declarations (about 9 MB that no page loads, and whose
source-map comments name files that do not exist, which the manifest storage refuses).
Collected and content-hashed like every other static file, so a bokeh upgrade busts caches.
"""
from __future__ import annotations

from pathlib import Path

from bokeh.util.paths import bokehjs_path
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PREFIX = "bokeh/static/js"


class BokehJSFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.root = Path(bokehjs_path()) / "js"
        self.storage = FileSystemStorage(location=str(self.root))
        self.storage.prefix = PREFIX

    def _bundles(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*.min.js"))

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        name = path[len(PREFIX) + 1:] if path.startswith(PREFIX + "/") else None
        if name not in self._bundles():
            return [] if find_all else None
        match = str(self.root / name)
        return [match] if find_all else match

    def list(self, ignore_patterns):
        for name in self._bundles():
            yield name, self.storage
