"""The bundled OHIF viewer's files (viewer/install.sh), adapted to be served under any path.

The published build of `@ohif/app` expects to live at the root of its host: index.html and
the stylesheets name their files from `/`, and every bundle loads its chunks, web workers and
WebAssembly from the public path `"/"` fixed at build time. Three rewrites let one copy serve
`/viewer/` and every `/tenants/{tenant}/viewer/` (and any prefix of `public_url`):

- index.html, per base path: `window.PUBLIC_URL` and the `src`/`href` attributes get the base;
- bundles: the public path becomes `window.PUBLIC_URL` in the page, and the folder of the
  worker's own script in a web worker (workers are started from the public path);
- stylesheets: `url(/...)` becomes relative to the stylesheet, which sits at the base.

A compressible file (bundles, stylesheets, WebAssembly) is prepared once, rewritten and
gzipped, and kept in memory while its file is unchanged: serving it costs no CPU, where the
API's GZip middleware would compress 17 MB of JavaScript again on every page load. Other
files (images, fonts) are served as they are.
Nothing here knows HTTP: `dicomflow.api.routes.viewer` serves what this module prepares.
"""

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

INDEX = "index.html"
CONFIG = "app-config.js"

# Build-time public path of the bundles -> the page's PUBLIC_URL, or a worker's own folder.
_PUBLIC_PATH = b'__webpack_require__.p = "/";'
_RUNTIME_PUBLIC_PATH = (
    b'__webpack_require__.p = (typeof window === "object" && window.PUBLIC_URL)'
    b' || new URL(".", self.location.href).pathname;'
)
_CSS_ROOT_URL = re.compile(rb"""url\((['"]?)/(?!/)""")
_INDEX_PUBLIC_URL = re.compile(r'window\.PUBLIC_URL="/"')
_INDEX_ROOT_ATTRIBUTE = re.compile(r'\b(src|href)="/(?!/)')

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".webapp": "application/x-web-app-manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
COMPRESSIBLE = frozenset({".js", ".mjs", ".css", ".html", ".json", ".jsonc", ".map", ".wasm"})
COMPRESSIBLE |= {".webapp", ".svg", ".xml", ".txt"}
# Build files that describe another host's deployment, and our own install stamp.
NOT_SERVED = frozenset({"_headers", "_redirects", "serve.json", ".installed", CONFIG})


class ViewerNotInstalled(Exception):
    """The viewer's files are missing: the install step (`make setup`) has not run."""


@dataclass(frozen=True)
class Prepared:
    """A file as served: `gzipped` is its prepared body compressed (None: serve the file as
    it is on disk); `etag` identifies the prepared body."""

    path: Path
    media_type: str
    gzipped: bytes | None = None
    etag: str = ""

    def body(self) -> bytes:
        """The prepared body, uncompressed (for the rare client that takes no gzip)."""
        return gzip.decompress(self.gzipped) if self.gzipped is not None else self.path.read_bytes()


class ViewerAssets:
    """The viewer's files under `root`, prepared on first use and kept while unchanged."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        # relative path -> ((mtime_ns, size) of the file prepared, what was prepared). Two
        # first requests at once may both prepare a file: the same result, stored twice.
        self._prepared: dict[str, tuple[tuple[int, int], Prepared]] = {}

    def check_installed(self) -> None:
        if not (self.root / INDEX).is_file():
            raise ViewerNotInstalled(
                f"the OHIF viewer is not installed in {self.root}: run `make setup`"
                " (viewer/install.sh), or set DICOMFLOW_VIEWER_DIR"
            )

    def index_html(self, base: str) -> bytes:
        """index.html for a viewer whose files are at `base` (a path ending with `/`)."""
        self.check_installed()
        html = (self.root / INDEX).read_text("utf-8")
        html, count = _INDEX_PUBLIC_URL.subn(f"window.PUBLIC_URL={json.dumps(base)}", html)
        if not count:
            raise ViewerNotInstalled(f"{self.root / INDEX} sets no window.PUBLIC_URL")
        html = _INDEX_ROOT_ATTRIBUTE.sub(lambda m: f'{m[1]}="{base}', html)
        return html.encode()

    def file(self, relative: str) -> Prepared | None:
        """The file at `relative` (a URL path under the viewer), or None when there is none.

        Only plain files inside the root are served: no dot segments, no hidden files.
        """
        self.check_installed()
        parts = PurePosixPath(relative).parts
        if not parts or any(p == "/" or p.startswith(".") for p in parts):
            return None
        if relative in NOT_SERVED or relative == INDEX:
            return None
        path = self.root.joinpath(*parts).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        suffix = path.suffix.lower()
        media_type = MEDIA_TYPES.get(suffix, "application/octet-stream")
        if suffix not in COMPRESSIBLE:
            return Prepared(path, media_type)
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        cached = self._prepared.get(relative)
        if cached is not None and cached[0] == version:
            return cached[1]
        body = rewrite(suffix, path.read_bytes())
        prepared = Prepared(
            path,
            media_type,
            gzip.compress(body, compresslevel=6, mtime=0),
            '"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        )
        self._prepared[relative] = (version, prepared)
        return prepared


def rewrite(suffix: str, body: bytes) -> bytes:
    """A bundle or stylesheet with its root-relative references made base-relative."""
    if suffix in (".js", ".mjs"):
        return body.replace(_PUBLIC_PATH, _RUNTIME_PUBLIC_PATH)
    if suffix == ".css":
        return _CSS_ROOT_URL.sub(rb"url(\1", body)
    return body
