"""The latent explorer in a real browser: clicking a point of the test-set map decodes that point."""

from __future__ import annotations

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
