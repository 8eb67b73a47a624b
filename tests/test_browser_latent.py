"""The latent explorer in a real browser: clicking a point of the test-set map decodes that point, and the
dimensions to traverse follow the starting point's ranking unless the visitor picked them by hand."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.served_app import CHROMIUM, LAUNCH_ARGS, playwright_session, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT_MS = 300_000  # generous: the machine may be loaded; the wait ends as soon as the answer shows


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with playwright_session() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
        with streamlit_server(log_path) as url:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page, url
        browser.close()


# Where a point of the map's first trace (digit 0) sits on the page, from plotly's own axes.
POINT_ON_PAGE = """(index) => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const gd = plots.find(p => (p._fullData || []).length >= 10);
  const layout = gd._fullLayout, box = gd.getBoundingClientRect(), trace = gd._fullData[0];
  return {x: box.left + layout._size.l + layout.xaxis.d2p(trace.x[index]),
          y: box.top + layout._size.t + layout.yaxis.d2p(trace.y[index])};
}"""


def test_clicking_a_point_of_the_map_decodes_it(page):
    page, url = page
    page.goto(f"{url}/latent")
    chart = page.locator(".js-plotly-plot").filter(has=page.locator(".legend")).last
    page.get_by_text("Map of the test set").scroll_into_view_if_needed()
    chart.wait_for()
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()
    page.wait_for_timeout(1000)  # plotly finishes laying out the points
    chart.scroll_into_view_if_needed()
    point = page.evaluate(POINT_ON_PAGE, 0)
    page.mouse.move(point["x"], point["y"])
    page.wait_for_timeout(300)  # plotly decides what is hovered on mouse move
    page.mouse.click(point["x"], point["y"])
    answer = page.get_by_text("Test example of digit")
    answer.wait_for()
    assert "digit 0" in answer.inner_text()


def chosen(page) -> list[str]:
    """The names of the dimensions selected for the traversal, as the page shows them."""
    return page.locator("[data-testid='stMultiSelect'] span[data-tag]").evaluate_all(
        "tags => tags.map(t => t.getAttribute('aria-label'))")


def wait_for_choice(page, expected: list[str]) -> list[str]:
    """The selection once it equals `expected`, or whatever it is when the bound runs out."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while (now := chosen(page)) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    return now


def start_from(page, option: str) -> None:
    page.locator("[data-testid='stSelectbox']").filter(has_text="Start from").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()


def library_ranking(pipe, digit: int) -> list[str]:
    """The library's own top dimensions for the Farsi digit, from the label's posterior mean, as the page names them."""
    from webapp import names, show

    shared = pipe.latent_layout["shared"]
    effects = pipe.dimension_effects(pipe.label_posterior(digit)[0], "farsi")[shared]
    return [names.dimension_name(pipe, int(d) + shared.start) for d in np.argsort(-effects)[:show.TRAVERSED_DIMS]]


def test_the_dimensions_follow_the_starting_point_unless_picked_by_hand(page, shipped_pipeline):
    page, url = page
    page.goto(f"{url}/latent")
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()
    zero, five = library_ranking(shipped_pipeline, 0), library_ranking(shipped_pipeline, 5)
    assert zero != five, "the case needs two starting points whose rankings differ"
    assert wait_for_choice(page, zero) == zero
    page.get_by_text("Ranked for digit 0, most effective first").wait_for()

    start_from(page, "digit 5")
    assert wait_for_choice(page, five) == five, "the selection kept the last starting point's ranking"
    page.get_by_text("Ranked for digit 5, most effective first").wait_for()

    page.get_by_role("button", name=f"Remove {five[-1]}").click()  # a choice of one's own
    mine = five[:-1]
    assert wait_for_choice(page, mine) == mine
    page.get_by_text("Your own choice").wait_for()
    start_from(page, "digit 2")
    page.wait_for_timeout(1000)  # a stale rerun would have replaced the choice by now
    assert chosen(page) == mine, "a hand-picked selection was replaced"
    page.get_by_text("Your own choice").wait_for()

    page.get_by_role("button", name="Rank for digit 2").click()
    two = library_ranking(shipped_pipeline, 2)
    assert wait_for_choice(page, two) == two
