"""Browser: a real Chromium's streams are served on the one stream path and counted per transport.

The demo page `/` opens two EventSources (its room and /events) on the same origin that served the page,
so Chromium reuses the keep-alive HTTP/1.1 connections that loaded the page and its assets; the dashboard
`/dashboard` opens a third. /metrics must show every one of them under
headcount_streams_open{transport="http1"} (and none under http2 on this plain-HTTP server), and the sum of
the transport-labelled gauges must equal the number of EventSources the pages have open: no stream is
served by another path that the gauges do not see, and no unlabelled series counts it.

Runs through scripts/browser-tests (after test_browser.py; file order).
"""
import re
import urllib.request

from selenium.webdriver.common.by import By

from conftest import wait_for

# Keeps every EventSource a page makes in window.__hcES (statics such as EventSource.CLOSED are inherited).
TRACK_EVENTSOURCES = """
(() => {
  const Original = window.EventSource;
  window.__hcES = [];
  window.EventSource = class extends Original {
    constructor(...args) { super(...args); window.__hcES.push(this); }
  };
})();
"""

OPEN_EVENTSOURCES = "return (window.__hcES || []).filter((e) => e.readyState === 1).map((e) => e.url)"

# How each event-stream request's connection was set up (Resource Timing; informational).
STREAM_TIMINGS = """
return performance.getEntriesByType('resource')
  .filter((e) => /\\/events/.test(e.name))
  .map((e) => ({url: e.name, protocol: e.nextHopProtocol, reused: e.connectStart === e.fetchStart && e.connectEnd === e.fetchStart}));
"""


def streams_open(url):
    """{labels-or-'': value} of every headcount_streams_open series."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^headcount_streams_open(\{[^}]*\})?\s+(\S+)", line)
        if m:
            labels = m.group(1) or ""
            t = re.search(r'transport="([^"]*)"', labels)
            out[t.group(1) if t else labels] = float(m.group(2))
    return out


def open_tab(b, url, new=True):
    if new:
        b.switch_to.new_window("tab")
    # The CDP script applies to the current tab only.
    b.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRACK_EVENTSOURCES})
    b.get(url)
    return b.current_window_handle


def test_browser_streams_are_counted_under_their_transport(server, browsers):
    b = browsers()
    demo = open_tab(b, server.url + "/?room=transport-test", new=False)
    wait_for(lambda: b.find_element(By.ID, "count").text.strip() == "1" and "connected" in
             (b.find_element(By.ID, "status-dot").get_attribute("class") or "").split(), what="demo page connected, showing 1")
    dash = open_tab(b, server.url + "/dashboard")
    wait_for(lambda: "connected" in (b.find_element(By.ID, "live-dot").get_attribute("class") or "").split(),
             what="dashboard live stream connected")

    def page_streams():
        urls = []
        for h in (demo, dash):
            b.switch_to.window(h)
            urls += b.execute_script(OPEN_EVENTSOURCES)
        return urls

    wait_for(lambda: len(page_streams()) == 3, what="3 open EventSources (demo: room + site, dashboard: site)")

    last = {}

    def gauges_count_the_browser():
        urls = page_streams()
        gauges = streams_open(server.url)
        last.update(urls=urls, gauges=gauges)
        labelled = gauges.get("http1", 0) + gauges.get("http2", 0)
        return ("http1" in gauges and "http2" in gauges and gauges["http2"] == 0
                and gauges["http1"] == len(urls) and sum(gauges.values()) == labelled)

    try:
        wait_for(gauges_count_the_browser, timeout=10, what="headcount_streams_open{transport=\"http1\"} to count every browser stream")
    except AssertionError as e:
        timings = []
        for h in (demo, dash):
            b.switch_to.window(h)
            timings += b.execute_script(STREAM_TIMINGS)
        raise AssertionError(f"{e}; browser EventSources {last.get('urls')}, /metrics headcount_streams_open "
                             f"{last.get('gauges')}; stream connections (Resource Timing) {timings}") from None
    # The room stream is the one counted in the room (the two /events streams are watch-only).
    room = server.room("transport-test")
    assert room["online"] == 1 and room["connections"] == 1, f"/api/rooms/transport-test: {room}"

    # Closing the tabs and the browser counts the streams out of the same gauge. (Navigating away is not
    # enough: Chromium may keep the page, and its streams, in the back/forward cache.)
    b.switch_to.window(dash)
    b.close()
    b.switch_to.window(demo)
    browsers.close(b)
    after = {}

    def all_closed():
        after.update(gauges=streams_open(server.url), stats=server.get("/api/stats"))
        return after["gauges"].get("http1") == 0 and after["stats"]["connections"] == 0

    try:
        wait_for(all_closed, timeout=10, what="http1 streams back to 0 after the pages were left")
    except AssertionError as e:
        raise AssertionError(f"{e}; /metrics headcount_streams_open {after.get('gauges')}, /api/stats {after.get('stats')}") from None
