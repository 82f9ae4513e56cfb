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


# ----------------------------------------------------------------- npm packages (package.json)

# Browser libraries installed by `npm ci` (package.json, package-lock.json) into node_modules/,
# served as /static/vendor/<package>/<file>: only the files pages load, never from a CDN.
NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
VENDOR_PREFIX = "vendor"
VENDOR_FILES = {  # static path under vendor/ -> file under node_modules/
    "sampjs/samp.js": "sampjs/samp.js",                    # SAMP Web Profile client (M. Taylor)
    "aladin-lite/aladin.js": "aladin-lite/dist/aladin.js",  # Aladin Lite v3 (ES module, WASM inside)
}


def vendor_available(name: str) -> bool:
    """Whether npm installed the file behind static path ``vendor/<name>`` (else pages fall back)."""
    source = VENDOR_FILES.get(name)
    return bool(source) and (NODE_MODULES / source).is_file()


class NodeModulesFinder(BaseFinder):
    """VENDOR_FILES that exist; none when npm is absent (pages then say so and fall back)."""

    def check(self, **kwargs):
        return []

    def _present(self) -> dict[str, Path]:
        return {name: NODE_MODULES / source for name, source in VENDOR_FILES.items() if vendor_available(name)}

    def find(self, path, find_all=False, **kwargs):
        name = path[len(VENDOR_PREFIX) + 1:] if path.startswith(VENDOR_PREFIX + "/") else None
        match = self._present().get(name)
        if match is None:
            return [] if find_all else None
        return [str(match)] if find_all else str(match)

    def list(self, ignore_patterns):
        for name, path in self._present().items():  # vendor/<package>/<file> in collectstatic
            package, filename = name.rsplit("/", 1)
            storage = FileSystemStorage(location=str(path.parent))
            storage.prefix = f"{VENDOR_PREFIX}/{package}"
            yield filename, storage
