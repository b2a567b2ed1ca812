"""The documentation site: it builds with the README's command, every page keeps its figures, errors fail it.

The build runs every tutorial page (cached by cell contents under build/jupyter_cache, so an unchanged page
is not run again) into a temporary folder. A lost figure raises no error (under MPLBACKEND=Agg matplotlib
draws and drops it), so the test counts the images each page's code should have made.
"""
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("myst_nb", reason="the docs extra is not installed: pip install -e '.[docs]'")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
NOT_EXECUTED = {"15-speed"}  # timings need minutes on a quiet machine; the page shows commands only
BUILD_SECONDS = 900


def sphinx_build(source, out, extra_env=None):
    """Run the README's command, ``python -m sphinx -W --keep-going -n -b html SOURCE OUT``, bounded in time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg", **(extra_env or {})}  # Agg as in CI: the docs must keep their figures anyway
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html",
                           str(source), str(out)], capture_output=True, text=True, timeout=BUILD_SECONDS, env=env,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs-html")
    result = sphinx_build(DOCS, out)
    assert result.returncode == 0, f"the docs build failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert ": WARNING:" not in result.stderr and ": ERROR:" not in result.stderr, result.stderr[-6000:]
    return out


class _CellOutputs(HTMLParser):
    """Counts images and tables inside the executed cells' output blocks of one page, and its exercises."""

    def __init__(self):
        super().__init__()
        self.stack = []  # (tag, is_output_block, is_solution) of the open elements
        self.images, self.tables, self.image_sources = 0, 0, []
        self.solutions, self.solutions_with_output = 0, set()

    def _inside(self, index):
        return any(entry[index] for entry in self.stack)

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        output = "cell_output" in classes
        solution = "solution" in classes
        if solution:
            self.solutions += 1
        if tag not in ("img", "br", "hr", "input", "meta", "link"):
            self.stack.append((tag, output, self.solutions if solution else 0))
        if self._inside(1):
            if tag == "img":
                self.images += 1
                self.image_sources.append(dict(attrs).get("src", ""))
            elif tag == "table":
                self.tables += 1
            solution_number = max((entry[2] for entry in self.stack), default=0)
            if solution_number:
                self.solutions_with_output.add(solution_number)

    def handle_endtag(self, tag):
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                break


def parse_page(site, page):
    parser = _CellOutputs()
    parser.feed((site / "tutorials" / f"{page}.html").read_text(encoding="utf-8"))
    return parser


def figures_expected(source):
    """Code cells of a page that draw: each makes one figure (a matplotlib figure or a cnnkit.viz picture)."""
    cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", source.read_text(encoding="utf-8"), flags=re.S)
    return sum(1 for cell in cells if "plt.subplots(" in cell or "Image(filename=" in cell)


def test_the_site_builds_without_warnings(site):
    assert (site / "index.html").exists()
    assert len(TUTORIALS) == 15


@pytest.mark.parametrize("source", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_every_page_keeps_its_figures(site, source):
    page = parse_page(site, source.stem)
    if source.stem in NOT_EXECUTED:
        assert "code-cell" not in source.read_text(encoding="utf-8")
        return
    expected = figures_expected(source)
    assert page.images >= expected, f"{source.stem}: {expected} drawing cells but {page.images} images in the output"
    assert page.images + page.tables >= 1, f"{source.stem} shows no figure or table made by its code"
    for src in page.image_sources:
        assert (site / "tutorials" / src).is_file(), f"{source.stem}: image {src} is missing from the build"


@pytest.mark.parametrize("source", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_every_exercise_has_an_executed_solution(site, source):
    text = source.read_text(encoding="utf-8")
    exercises = text.count("{exercise-start}")
    assert text.count("{solution-start}") == exercises
    page = parse_page(site, source.stem)
    assert page.solutions == exercises
    assert len(page.solutions_with_output) == exercises, f"{source.stem}: a solution shows no executed output"


def _tiny_site(tmp_path, page_body):
    """A copy of the real conf.py with one executed page, its cache in tmp_path (not the real one)."""
    docs = tmp_path / "docs"
    (docs / "_support").mkdir(parents=True)
    shutil.copy(DOCS / "conf.py", docs / "conf.py")
    shutil.copy(DOCS / "_support" / "docs_support.py", docs / "_support" / "docs_support.py")
    (docs / "index.md").write_text("# tiny\n\n```{toctree}\npage\n```\n", encoding="utf-8")
    header = "---\nfile_format: mystnb\nkernelspec:\n  name: python3\n  display_name: Python 3\n---\n\n# page\n\n"
    (docs / "page.md").write_text(header + page_body, encoding="utf-8")
    return docs


@pytest.mark.parametrize("body, message", [
    ("```{code-cell} ipython3\nraise RuntimeError('injected failure')\n```\n", "injected failure"),
    ("A link to {doc}`no-such-page`.\n", "no-such-page"),
], ids=["cell-raises", "broken-reference"])
def test_an_injected_error_fails_the_build(tmp_path, body, message):
    docs = _tiny_site(tmp_path, body)
    result = sphinx_build(docs, tmp_path / "html", {"CNNKIT_DOCS_WORK": str(tmp_path / "work")})
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    clean = _tiny_site(tmp_path / "clean", "```{code-cell} ipython3\nprint(6 * 7)\n```\n")
    assert sphinx_build(clean, tmp_path / "clean-html").returncode == 0  # the same site without the error builds


# ---------------------------------------------------------------------------------------------- in a browser
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--allow-file-access-from-files", "--window-size=1280,1600"]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"no headless browser at {CHROMIUM} and {CHROMEDRIVER}: run 'bash .ci/install-browser' first")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("page, title", [("index", "cnnkit: learn the CNN canon"),
                                         ("tutorials/01-start-here", "Start here")])
def test_pages_render_with_their_images_in_chromium(site, browser, page, title):
    browser.get((site / f"{page}.html").as_uri())
    assert "cnnkit" in browser.title
    assert title in browser.execute_script("return document.querySelector('article h1').textContent")
    # Furo's stylesheet applied (the sidebar is laid out beside the article) and every image decoded.
    assert browser.execute_script("return getComputedStyle(document.querySelector('.sidebar-drawer')).display") \
        != "none"
    images = browser.execute_script(
        "return Array.from(document.images).map((i) => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
    if page != "index":
        assert sum(1 for _, _, width in images if width > 0) >= 3, images
    assert all(complete and width > 0 for _, complete, width in images), images
    assert browser.execute_script("return document.querySelectorAll('.cell_output').length") >= (
        0 if page == "index" else 5)
