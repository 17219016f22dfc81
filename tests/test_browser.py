"""The built book in a real browser: headless Chromium loads every chapter page from disk.

Checks, for every page of ``_toc.yml``: figures present (images that exist on disk;
plotly figures drawn by plotly.js, not only their empty div), no error output, internal
links that resolve to existing files and anchors. Two screenshots are kept under the
build folder (``<build>/_build/screenshots``). The browser runs with every host name
unresolvable, as a reader without network would.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skips without it. The book
is built into a temporary folder; set ``ROSETTA_BOOK_BUILD`` to the ``--path-output``
folder of an existing build to check that one instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--host-resolver-rules=MAP * ~NOTFOUND"]  # offline: CDN scripts fail fast, as without network
SCREENSHOTS = ("book/intro", "notebooks/02_correlation")
PLOTLY_CHAPTER = "notebooks/02_correlation"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install -y chromium")


def toc_pages() -> list[str]:
    """Every page of the book, in order, as paths without suffix (e.g. "notebooks/02_correlation")."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []):
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return [str(Path(p).with_suffix("")) if Path(p).suffix in (".md", ".ipynb") else p for p in pages]


def chromium(*args: str, timeout: int = 90) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"chromium {args[-1]} failed: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def doms(html) -> dict[str, str]:
    """The DOM of every page after its scripts ran, loaded from disk (file://) in parallel."""
    pages = toc_pages()
    missing = [p for p in pages if not (html / f"{p}.html").exists()]
    assert not missing, f"chapters of _toc.yml without a built page: {missing}"

    def dump(page: str) -> str:
        return chromium("--virtual-time-budget=5000", "--dump-dom", (html / f"{page}.html").as_uri())

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(pages, pool.map(dump, pages)))


class _Page(HTMLParser):
    """Links, image sources and element ids of a page (script bodies are not markup)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


def test_every_chapter_page_loads_without_error_output(doms):
    for page, dom in doms.items():
        assert "<article" in dom and len(dom) > 5000, f"{page}: the page did not render"
        assert "Traceback" not in dom, f"{page}: an output cell shows a Traceback"
        assert "output traceback" not in dom and "output error" not in dom, f"{page}: an error output cell"


def test_notebook_chapters_have_their_figures(doms, html):
    for page, dom in doms.items():
        images = [src for src in _Page(dom).images if not src.startswith(("http", "data:", "//"))
                  and "_static" not in src]  # figures, not the theme's logo
        for src in images:
            assert (html / page).parent.joinpath(unquote(src)).resolve().exists(), f"{page}: image {src} is missing"
        if page.startswith("notebooks/"):
            figures = len(images) + dom.count("js-plotly-plot")
            assert figures >= 1, f"{page}: an executed chapter without any figure"
        static = (html / f"{page}.html").read_text()
        expected = static.count('class="plotly-graph-div"')
        drawn = dom.count("js-plotly-plot")  # plotly.js adds this class when it draws a figure
        assert drawn >= expected, f"{page}: {expected} plotly figures, {drawn} drawn"
        if expected:
            assert "main-svg" in dom, f"{page}: plotly figure divs without their SVG"
    assert doms[PLOTLY_CHAPTER].count("js-plotly-plot") >= 1, f"{PLOTLY_CHAPTER}: no plotly figure drawn"


EXPLORER_PAGE = "book/explorer"


def test_the_concept_explorer_works_without_a_kernel_or_network(doms, html):
    """Its script ran (one card shown, the count filled), and ``?concept=`` filters the clusters."""
    dom = doms[EXPLORER_PAGE]
    assert 'class="rosetta-explorer"' in dom and 'data-ready="1"' in dom, "the explorer's script did not run"
    cards = re.findall(r'<div class="rx-card"[^>]*>', dom)
    assert len(cards) >= 2 and sum("hidden" not in card for card in cards) == 1, "one cluster is shown at a time"
    shown, total = map(int, re.search(r"(\d+) of (\d+) clusters", dom).groups())
    assert shown == total == len(cards)
    trained = sum('data-id="trained-' in card for card in cards)
    url = (html / f"{EXPLORER_PAGE}.html").as_uri() + "?concept=trained"
    filtered = chromium("--virtual-time-budget=5000", "--dump-dom", url)
    assert re.search(r"(\d+) of (\d+) clusters", filtered).groups() == (str(trained), str(total))
    visible = [card for card in re.findall(r'<div class="rx-card"[^>]*>', filtered) if "hidden" not in card]
    assert len(visible) == 1 and 'data-id="trained-' in visible[0]


# ipywidgets (e.g. progress bars) need their manager from a CDN to be live; offline they stay static text.
# Nothing else may come from the network.
WIDGET_CDN = ("cdn.jsdelivr.net/npm/@jupyter-widgets/", "cdnjs.cloudflare.com/ajax/libs/require.js/")


def test_pages_load_no_scripts_from_the_network(html):
    for page in toc_pages():
        sources = re.findall(r'<script[^>]*\ssrc="((?:https?:)?//[^"]+)"', (html / f"{page}.html").read_text())
        remote = [src for src in sources if not any(cdn in src for cdn in WIDGET_CDN)]
        assert not remote, f"{page}: scripts loaded from the network: {remote}"


def test_plotly_js_is_served_once_not_inlined(html):
    assert (html / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    inlined = [page for page in toc_pages() if "* plotly.js v" in (html / f"{page}.html").read_text()]
    assert not inlined, f"plotly.js inlined into {inlined}"
    assert (html / f"{PLOTLY_CHAPTER}.html").stat().st_size < 2_000_000


def test_math_is_typeset_offline(doms):
    # The browser cannot resolve any host: typeset math proves MathJax came from _static.
    pages_with_math = [page for page, dom in doms.items() if "\\(" in dom or "\\[" in dom or "mjx-" in dom]
    assert "book/background" in pages_with_math, "the method chapter lost its equations"
    for page in pages_with_math:
        assert "mjx-container" in doms[page], f"{page}: equations left as raw TeX (MathJax did not load)"
        # a TeX error (a misplaced &, an unknown macro) is typeset as an merror box, not raised
        assert "<mjx-merror" not in doms[page] and "Math input error" not in doms[page], f"{page}: a TeX error"


def test_internal_links_resolve(html):
    broken = []
    ids: dict[Path, set[str]] = {}
    for page in toc_pages():
        source = html / f"{page}.html"
        for href in _Page(source.read_text()).hrefs:
            parts = urlsplit(href)
            if parts.scheme or href.startswith(("//", "mailto:", "javascript:")):
                continue
            target = source if not parts.path else (source.parent / unquote(parts.path)).resolve()
            if not target.exists():
                broken.append(f"{page}: {href} (no file {target})")
                continue
            if parts.fragment and target.suffix == ".html":
                if target not in ids:
                    ids[target] = _Page(target.read_text()).ids
                if unquote(parts.fragment) not in ids[target]:
                    broken.append(f"{page}: {href} (no anchor #{parts.fragment} in {target.name})")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:20])


def test_screenshots_of_two_pages_are_kept(html):
    folder = html.parent / "screenshots"
    folder.mkdir(exist_ok=True)
    for page in SCREENSHOTS:
        shot = folder / (page.replace("/", "_") + ".png")
        chromium("--window-size=1280,2400", "--virtual-time-budget=5000", f"--screenshot={shot}",
                 (html / f"{page}.html").as_uri())
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000, f"{shot} is empty"
    print(f"screenshots kept in {folder}")


def test_no_table_cell_is_cut_short(doms):
    # pandas cuts long cells with "..." (display.max_colwidth); a reader then misses the value
    cell = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
    for page, dom in doms.items():
        cut = [text for text in cell.findall(dom) if re.sub(r"<[^>]+>", "", text).strip().endswith(("...", "…"))]
        assert not cut, f"{page}: table cells cut short: {cut[:3]}"
