"""Serve the browser page locally, or write it out as a static site.

The page is static: HTML (with its stylesheet, the model list and its words in
English and Korean, ``strings.json``, inlined), the esbuild bundle, the mp3 reader,
the captcha finder and wasm in ``dist/`` (made by ``npm run build``), example images, the voice sets'
facts (the package's ``voices.json``) and the TF.js models. One table of URL -> file (:func:`site_files`) feeds both the
local server and ``kcaptcha site build``, so what is tested locally is what gets
published.
"""

from __future__ import annotations

import json
import shutil
import threading
import webbrowser
from dataclasses import asdict
from html import escape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import KcaptchaError, ModelError
from ..modelfile import GENERAL, Reading, catalogue_key

WEB_DIR = Path(__file__).resolve().parent
DIST = WEB_DIR / "dist"
MODELS_DIR = WEB_DIR.parent / "models" / "tfjs"
VOICES = WEB_DIR.parent / "voices.json"  # audio.py's facts, read by web/audio.js too
BUILT = ("app.js", "audio.js", "locate.js", "tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm")
CATALOG_KEYS = ("name", "preset", "width", "height", "length_min", "length_max", "classes", "decoder")
EXAMPLE_SUFFIXES = (".jpg", ".png")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",  # needed for WebAssembly.instantiateStreaming
    ".bin": "application/octet-stream",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}


def require_built() -> None:
    """The bundle is made by npm and never committed: say how to make it when it is missing."""
    missing = [name for name in BUILT if not (DIST / name).is_file()]
    if not missing:
        return
    root = WEB_DIR.parents[2]
    how = (
        f"build it with: cd {root} && npm ci && npm run build"
        if (root / "package.json").is_file()
        else "this installation has no built page: use a source checkout and run npm ci && npm run build"
    )
    raise KcaptchaError(f"the web page is not built ({', '.join(missing)} missing in {DIST}); {how}")


def catalog(models_dir: Path = MODELS_DIR) -> list[dict]:
    """What the page needs to pick a model and read its answers: name, input size, string lengths,
    symbols, decoder and the reading thresholds (defaults for files that predate them), in catalogue
    order (modelfile.catalogue_key: the default model first, which Auto preloads)."""
    entries = []
    for path in sorted(Path(models_dir).glob("*/model.json")):
        try:
            meta = json.loads(path.read_text())["userDefinedMetadata"]["kcaptcha"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{path} is not a kcaptcha TF.js model ({exc})") from exc
        if meta["name"] != path.parent.name:
            raise ModelError(
                f"{path} says its name is {meta['name']!r}, but its folder is {path.parent.name!r}"
            )
        entries.append({**{key: meta[key] for key in CATALOG_KEYS}, **asdict(Reading.from_meta(meta))})
    if not entries:
        raise ModelError(f"no TF.js models in {models_dir} (export some with: kcaptcha export --format tfjs)")
    return sorted(entries, key=lambda e: catalogue_key(e["name"], e["width"], e["height"]))


def strings() -> dict[str, dict[str, str]]:
    """The page's words (strings.json): language -> key -> text, where ``{name}`` is filled in."""
    return json.loads((WEB_DIR / "strings.json").read_text(encoding="utf-8"))


def examples_html(models: list[dict]) -> str:
    """A button per example picture (``examples/NAME-SEED.jpg|png``) of the models present: seed by seed,
    each in catalogue order. Their English label is replaced in another language by the page."""
    label = strings()["en"]["example_label"]
    found = [(p.stem.rsplit("-", 1)[1], i, p, m) for i, m in enumerate(models)
             for p in (WEB_DIR / "examples").glob(f"{m['name']}-*") if p.suffix in EXAMPLE_SUFFIXES]
    return "\n".join(
        f'        <button type="button" data-src="examples/{escape(p.name)}" data-model="{escape(m["name"])}" '
        f'data-i18n-label="example_label"\n                aria-label="{escape(label.format(model=m["name"]))}">\n'
        f'          <img alt="" width="{m["width"]}" height="{m["height"]}">\n        </button>'
        for _, _, p, m in sorted(found, key=lambda f: f[:2])
    )


def auto_html(models: list[dict]) -> str:
    """How Auto chooses, from the models present: which sizes it knows and which models share one. One
    item per language (``data-lang``); the page shows the visitor's."""
    sizes: dict[tuple[int, int], list[dict]] = {}
    general = next((m for m in models if m["preset"] == GENERAL), None)
    for m in models:
        if m is general:
            continue
        sizes.setdefault((m["width"], m["height"]), []).append(m)

    def chars(m: dict) -> str:
        lo, hi = m["length_min"], m["length_max"]
        return f"{lo}" if lo == hi else f"{lo}&ndash;{hi}"

    items = []
    for lang, words in strings().items():
        parts = []
        for (w, h), group in sizes.items():
            names = words["auto_or"].join(words["auto_model"].format(name=escape(m["name"]), chars=chars(m))
                                          for m in group)
            told = words["auto_told"] if len(group) > 1 else ""
            parts.append(words["auto_size"].format(w=w, h=h, names=names, told=told))
        hidden = "" if lang == "en" else " hidden"  # index.html is English until the page translates it
        others = words["auto_general"].format(name=escape(general["name"])) if general else words["auto_closest"]
        intro = words["auto_intro"].format(sizes="; ".join(parts), others=others)
        items.append(f'<li data-lang="{lang}"{hidden}>{intro}</li>')
    return "\n        ".join(items)


def site_files(models_dir: Path = MODELS_DIR) -> dict[str, Path | bytes]:
    """URL path (no leading slash) -> file to send, or the bytes of a generated file."""
    require_built()
    files: dict[str, Path | bytes] = {f"dist/{p.name}": p for p in sorted(DIST.iterdir()) if p.is_file()}
    files.update({f"examples/{p.name}": p for p in sorted((WEB_DIR / "examples").iterdir()) if p.is_file()})
    files["voices.json"] = VOICES  # the mp3 reader's facts: fetched after the first answer, not before
    models = catalog(models_dir)
    for entry in models:
        for p in sorted((Path(models_dir) / entry["name"]).iterdir()):
            files[f"models/{entry['name']}/{p.name}"] = p
    files["index.html"] = files[""] = page_html(models, models_dir).encode()
    return files


def page_html(models: list[dict], models_dir: Path = MODELS_DIR) -> str:
    """index.html as served, in one response with what the first answer needs before any script runs.

    The stylesheet is inlined and the model list and the page's words embedded: each would be a request, and a new
    browser's first requests wait in its network queue (about 25 ms on this machine) before the page
    can lay out. The first model's files are preloaded, so they download while the script loads.
    """
    html = (WEB_DIR / "index.html").read_text()
    stylesheet = '<link rel="stylesheet" href="style.css">'
    html = html.replace(stylesheet, f"<style>\n{(WEB_DIR / 'style.css').read_text()}  </style>")
    listing = json.dumps({"models": models}).replace("</", "<\\/")  # cannot end the <script> element
    folder = Path(models_dir) / models[0]["name"]
    first = [escape(f"models/{folder.name}/{p.name}") for p in sorted(folder.iterdir())]
    words = json.dumps(strings(), ensure_ascii=False).replace("</", "<\\/")
    head = "\n".join(
        [f'  <script type="application/json" id="models">{listing}</script>',
         f'  <script type="application/json" id="strings">{words}</script>']
        + [f'  <link rel="preload" href="{href}" as="fetch" crossorigin>' for href in first]
    )
    html = html.replace("        <!-- examples -->", examples_html(models))
    html = html.replace("<!-- auto -->", auto_html(models))
    return html.replace("  <!-- models -->", head)


def build_site(out: str | Path, models_dir: Path = MODELS_DIR) -> list[Path]:
    """Write the page, runtime, examples and models into ``out``: a folder any static host can serve."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise KcaptchaError(f"{out} exists and is not a folder")
    written = []
    for url, source in site_files(models_dir).items():
        if not url:
            continue
        target = out / url
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
        written.append(target)
    return written


def make_server(
    host: str = "127.0.0.1", port: int = 8000, models_dir: Path = MODELS_DIR
) -> ThreadingHTTPServer:
    """A threaded HTTP server for the page (port 0: any free port); call ``serve_forever``."""
    files = site_files(models_dir)

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a page load is a dozen small requests

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._send(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._send(with_body=False)

        def _send(self, with_body: bool) -> None:
            url = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/")
            source = files.get(url)
            if source is None:
                self.send_error(404)
                return
            body = source if isinstance(source, bytes) else source.read_bytes()
            suffix = Path(url or "index.html").suffix
            self.send_response(200)
            self.send_header("Content-Type", TYPES.get(suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")  # always revalidate: a rebuilt bundle shows at once
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
            pass  # the page makes a dozen requests per load; the console stays readable

    return ThreadingHTTPServer((host, port), Handler)


def serve(host: str, port: int, models_dir: Path = MODELS_DIR, open_browser: bool = True) -> None:
    """Serve the page until interrupted, opening it in the default browser unless told not to."""
    try:
        server = make_server(host, port, models_dir)
    except OSError as exc:
        raise KcaptchaError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    url = f"http://{host}:{server.server_address[1]}/"
    print(f"serving the KCAPTCHA solver page at {url} (Ctrl+C to stop)", flush=True)
    if open_browser:
        threading.Timer(0.3, webbrowser.open, args=(url,)).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
