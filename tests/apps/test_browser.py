"""The explorer in a real headless browser (Debian Chromium driven by playwright).

Serves `apps/explorer.py` on 127.0.0.1 against runs made by the real pipeline, opens every
page, changes a control, clicks a patching-heatmap cell and checks the drill-down follows,
clicks a sweep's trial and checks its run opens, types a problem into the playground, and
fails on any Streamlit exception. Screenshots go to tests/artifacts/ (not committed), and so
do the measured times to open each page and to switch a control (timings.jsonl).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
PAGES = ["overview", "patching", "attribution", "attention", "compare", "neurons", "probes",
         "playground"]
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_runs, tiny_sweep, tiny_llm_run, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: `make browser` installs it (make test does)")
    runs = tmp_path_factory.mktemp("browser") / "runs"
    shutil.copytree(demo_runs[0], runs)
    shutil.copytree(tiny_sweep[0], runs, dirs_exist_ok=True)
    shutil.copytree(tiny_llm_run[1].dir, runs / tiny_llm_run[1].name)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "apps" / "explorer.py"),
         "--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}",
         "--browser.gatherUsageStats=false", "--", "--runs-dir", str(runs)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the explorer did not come up within 90 s:\n"
                    + proc.stdout.read().decode(errors="replace")[-2000:])
    yield base
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield tab
        browser.close()


IDLE_JS = ("!document.querySelector('[data-testid=\"stStatusWidget\"]')"
           " && !document.querySelector('[data-stale=\"true\"]')")


def _until(page, condition_js: str, timeout: int = 60_000) -> None:
    """Wait for a state: `condition_js` true with no script run going and nothing stale.

    Waiting on the state an action must produce (not on "idle" alone, which can hold before
    the rerun the action triggers has even started) is what keeps these tests from flaking.
    """
    page.wait_for_function(f"() => ({condition_js}) && {IDLE_JS}", timeout=timeout)


def _text(text: str) -> str:
    return f"document.body.innerText.includes({text!r})"


def _one_figure(key: str, title_part: str) -> str:
    """JS: exactly one plotly chart in the element keyed `key`, its title holding the text."""
    return (f"(() => {{ const gd = document.querySelectorAll('.st-key-{key} .js-plotly-plot');"
            f" return gd.length === 1 && gd[0].layout && "
            f"String((gd[0].layout.title || {{}}).text || '').includes({title_part!r}); }})()")


def _open(page, base: str, name: str, query: str = "run=tiny") -> None:
    page.goto(f"{base}/{name}?{query}")
    _until(page, "!!document.querySelector('[data-testid=\"stMain\"]')")


def _no_exception(page, where: str) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, f"{where}: {errors.first.inner_text()[:500]}"


def _timed(what: str, started: float) -> None:
    """Record how long an action took to reach its state (reported, never asserted: a
    timing under another process's load says nothing about correctness)."""
    seconds = time.perf_counter() - started
    with open(ARTIFACTS / "timings.jsonl", "a") as f:
        f.write(json.dumps({"what": what, "seconds": round(seconds, 3)}) + "\n")
    print(f"{what}: {seconds:.2f} s")


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_without_exceptions(page, server, name):
    started = time.perf_counter()
    _open(page, server, name)
    _until(page, "!!document.querySelector('.js-plotly-plot')")
    _timed(f"open /{name}", started)
    _no_exception(page, name)
    assert "Page not found" not in page.locator("body").inner_text(), name  # /overview too
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_root_address_opens_the_overview_at_its_own_address(page, server):
    _open(page, server, "")
    _until(page, "window.location.pathname === '/overview' && "
                 "!!document.querySelector('.js-plotly-plot')")
    assert "run=tiny" in page.url  # the run picked in the address survives the redirect
    _no_exception(page, "root")


def test_navigation_between_pages_is_timed(page, server):
    """Page to page through the sidebar, as a researcher moves (warm caches after the first
    visit); each move waits for the new page's own title and a drawn figure."""
    _open(page, server, "overview")
    _until(page, "!!document.querySelector('.js-plotly-plot')")
    for name, title in (("patching", "Activation patching"), ("attribution", "Attribution"),
                        ("attention", "Attention"), ("probes", "Probes"),
                        ("overview", "Run tiny")):
        started = time.perf_counter()
        page.locator(f'[data-testid="stSidebarNav"] a[href$="/{name}"]').first.click()
        _until(page, f"window.location.pathname === '/{name}' && "
                     f"[...document.querySelectorAll('h1')].some(h => "
                     f"h.innerText.startsWith({title!r})) && "
                     "!!document.querySelector('.js-plotly-plot')")
        _timed(f"navigate to /{name}", started)
        _no_exception(page, name)


def _selected(page) -> str:
    return page.locator("h3", has_text="Selected:").first.inner_text()


CELL_JS = """(el) => {
  const gd = el.querySelector('.js-plotly-plot');
  const tr = gd.data.find(t => t.meta === 'cells');
  const i = 0;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return {x: box.left + xa.l2p(xa.d2l(tr.x[i])), y: box.top + ya.l2p(ya.d2l(tr.y[i])),
          col: String(tr.x[i]), row: String(tr.y[i])};
}"""


OUTLINED_JS = """(() => {
  const gd = document.querySelector('.st-key-patching_layer_head .js-plotly-plot');
  const box = ((gd && gd.layout.shapes) || []).find(s => s.name === 'selected');
  if (!box) return false;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return (box.x0 + box.x1) / 2 === xa.d2l('%(col)s') && (box.y0 + box.y1) / 2 === ya.d2l('%(row)s');
})()"""


def test_patching_control_and_cell_click_drive_the_drill_down(page, server):
    _open(page, server, "patching")
    heatmap = page.locator(".st-key-patching_layer_head")
    _until(page, _one_figure("patching_layer_head", "Layer × head"))
    before = _selected(page)

    # a control: switch the direction radio to noising and back
    started = time.perf_counter()
    page.locator(".st-key-patching_direction").get_by_text("noise", exact=True).click()
    _until(page, _one_figure("patching_layer_pos", ", noise ("))  # not "denoise ("
    _timed("patching direction switch", started)
    _no_exception(page, "direction switch")
    page.locator(".st-key-patching_direction").get_by_text("denoise", exact=True).click()
    _until(page, _one_figure("patching_layer_pos", ", denoise ("))

    heatmap = page.locator(".st-key-patching_layer_head")
    heatmap.scroll_into_view_if_needed()
    cell = heatmap.evaluate(CELL_JS)
    page.mouse.move(cell["x"], cell["y"])
    page.mouse.click(cell["x"], cell["y"])
    expected = f"Selected: {cell['row']}{cell['col']} z (all positions)"
    _until(page, f"{_text(expected)} && {_one_figure('patching_distribution', 'Effect over')}")
    assert _selected(page) != before or expected in before
    _no_exception(page, "cell click")
    # the clicked cell is outlined on its heatmap, and its drill-down is on screen beside it
    _until(page, OUTLINED_JS % {"row": cell["row"], "col": cell["col"]})
    selected = page.locator("h3", has_text="Selected:").first.bounding_box()
    clicked = page.locator(".st-key-patching_layer_head").bounding_box()
    assert abs(selected["y"] - clicked["y"]) < 1000, (selected, clicked)  # within one screen
    page.screenshot(path=str(ARTIFACTS / "patching-clicked.png"), full_page=True)


TOKEN_VALUES_JS = "els => els.map(e => e.dataset.attention === undefined ? null : " \
                  "Number(e.dataset.attention))"


def test_hovering_a_token_shows_where_it_attends(page, server):
    """The CircuitsVis-style view: hovering a token colours every token by the chosen head's
    attention from it; switched, by the attention paid to it; another head repaints."""
    _open(page, server, "attention", "run=tiny&layer=1&head=2&prompt=0")
    view = 'iframe[srcdoc*="attention-tokens"]'
    _until(page, f"!!document.querySelector('{view}')")
    iframe = page.locator(view)
    data = json.loads(re.search(r"const D = (.*);\n", iframe.get_attribute("srcdoc")).group(1))
    patterns = np.asarray(data["patterns"])
    frame = iframe.element_handle().content_frame()
    frame.wait_for_selector("span.token")
    i = len(data["tokens"]) - 2
    frame.hover(f"span.token[data-pos='{i}']")
    painted = "() => document.querySelectorAll('span.token[data-attention]').length === %d"
    frame.wait_for_function(painted % len(data["tokens"]))
    got = frame.eval_on_selector_all("span.token", TOKEN_VALUES_JS)
    assert np.allclose(got, patterns[2, i], atol=1e-4)  # L1H2's attention from token i
    frame.click(f"span.token[data-pos='{i}']")  # pin it, then read the other direction
    frame.check("input[value=to]")
    frame.wait_for_function("() => document.querySelector('.readout').innerText"
                            ".includes('attending to')")
    assert np.allclose(frame.eval_on_selector_all("span.token", TOKEN_VALUES_JS),
                       patterns[2, :, i], atol=1e-4)
    frame.click("button.head[data-head='0']")
    frame.wait_for_function("() => document.querySelector('.readout').innerText"
                            ".startsWith('L1H0')")
    assert np.allclose(frame.eval_on_selector_all("span.token", TOKEN_VALUES_JS),
                       patterns[0, :, i], atol=1e-4)
    _no_exception(page, "attention tokens")


def test_the_llm_page_draws_an_llm_run(page, server):
    started = time.perf_counter()
    _open(page, server, "llm", "run=llm")
    _until(page, f"{_one_figure('llm_heads', 'Every head')} && "
                 f"{_one_figure('llm_knockout', 'Knockout')}")
    _timed("open /llm", started)
    _no_exception(page, "llm")
    page.screenshot(path=str(ARTIFACTS / "llm.png"), full_page=True)


def test_playground_takes_a_typed_problem(page, server):
    _open(page, server, "playground")
    box = page.locator(".st-key-playground_problem input")
    box.fill("12+34")
    box.press("Enter")
    title = "Live patching: z × position, denoise, 12+34="
    _until(page, f"{_text('Generated: 12+34=')} && {_one_figure('playground_heatmap', title)}")
    _no_exception(page, "playground")

    box = page.locator(".st-key-playground_problem input")
    box.fill("12*34x")
    box.press("Enter")
    _until(page, _text("Invalid problem: cannot read '12*34x'"))
    _no_exception(page, "playground bad input")
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)


POINT_JS = """(el) => {
  const gd = el.querySelector('.js-plotly-plot');
  const tr = gd._fullData.find(t => t.meta === 'trials');  // numeric arrays decoded
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return {x: box.left + xa.l2p(xa.d2l(tr.x[0])), y: box.top + ya.l2p(ya.d2l(tr.y[0])),
          run: String(tr.customdata[0][0])};
}"""


def test_a_click_on_a_sweep_trial_opens_its_run(page, server):
    _open(page, server, "sweeps", query="run=sw-sweep")
    _until(page, _one_figure("sweep_plot", "exact_match vs n_train"))
    _no_exception(page, "sweeps")
    page.screenshot(path=str(ARTIFACTS / "sweeps.png"), full_page=True)
    plot = page.locator(".st-key-sweep_plot")
    plot.scroll_into_view_if_needed()
    point = plot.evaluate(POINT_JS)
    page.mouse.move(point["x"], point["y"])
    page.mouse.click(point["x"], point["y"])
    # the overview page of that trial's run
    _until(page, f"{_text('Run ' + point['run'])} && {_text('Held-out accuracy')}")
    _no_exception(page, "sweep click")
