"""Browser tests: the demo page, the embeddable widget and the dashboard against a real server.

Each test checks what the page shows and what the server's JSON API reports.
Run with scripts/browser-tests (the tests run in file order; the restart test comes last
because it throws away the server's state).
"""
import os
import signal
import socket
import subprocess
import time

import pytest
from selenium.webdriver.common.by import By

from conftest import Server, http_json, wait_for

ADMIN, SECRET = "s3cret-admin", "join-token-secret"
SCREENSHOTS = os.environ.get("HEADCOUNT_SCREENSHOTS", os.path.join(os.path.dirname(__file__), "..", "..", "docs", "img"))


# ---------- helpers ----------

def text(d, css):
    return d.find_element(By.CSS_SELECTOR, css).text.strip()


def classes(d, css):
    return (d.find_element(By.CSS_SELECTOR, css).get_attribute("class") or "").split()


def demo_state(d):
    """(count text, dot classes, status text) of the demo page."""
    return text(d, "#count"), classes(d, "#status-dot"), text(d, "#status-text")


def demo_shows(d, n):
    count, dot, status = demo_state(d)
    return count == str(n) and "connected" in dot and "disconnected" not in dot and status == "connected"


def badges(d):
    """[(count attribute, classes)] of every widget badge on the page."""
    return d.execute_script("""
        return [...document.querySelectorAll('.headcount-badge')].map(
            (b) => [b.getAttribute('data-headcount-count'), b.className]);""")


def badges_show(d, n, expected=2):
    bs = badges(d)
    return len(bs) == expected and all(c == str(n) and "headcount-connected" in k.split() for c, k in bs)


def is_leader(d):
    return d.execute_script("return !!(window.Headcount && window.Headcount.isLeader())")


def room_is(server, room, online, connections=None):
    r = server.room(room)
    return r["online"] == online and (connections is None or r["connections"] == connections)


def console_errors(d):
    try:
        return [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    except Exception:  # noqa: BLE001 - logs unavailable
        return []


# ---------- a. demo page ----------

def test_demo_page_counts_visitors_across_browsers(server, browsers):
    b1 = browsers()
    b1.get(server.url + "/")
    wait_for(lambda: demo_shows(b1, 1), what="demo page to show 1, connected")
    assert text(b1, "#room-name") == "lobby"
    assert "connected" in classes(b1, "#status-dot")
    wait_for(lambda: room_is(server, "lobby", 1, 1), what="/api/rooms/lobby online 1, connections 1")
    wait_for(lambda: text(b1, "#site-count") == "1", what="site total 1")

    b2 = browsers()  # a second profile is a second visitor
    b2.get(server.url + "/")
    wait_for(lambda: demo_shows(b1, 2) and demo_shows(b2, 2), what="both browsers to show 2")
    assert room_is(server, "lobby", 2, 2)

    browsers.close(b2)
    wait_for(lambda: demo_shows(b1, 1), timeout=15, what="first browser back to 1 after the leave grace")
    wait_for(lambda: room_is(server, "lobby", 1, 1), what="/api/rooms/lobby back to online 1")
    assert console_errors(b1) == []


def test_demo_page_room_from_url_and_selftest(server, browsers):
    b = browsers()
    b.get(server.url + "/?room=article-42")
    wait_for(lambda: demo_shows(b, 1), what="room article-42 to show 1")
    assert text(b, "#room-name") == "article-42"
    assert room_is(server, "article-42", 1, 1)

    b.find_element(By.ID, "selftest").click()
    result = wait_for(lambda: (classes(b, "#selftest-result") or [None])[0] in ("ok", "warn", "bad") and b.find_element(By.ID, "selftest-result"),
                      timeout=25, what="the self-test to finish")
    assert result.get_attribute("class") == "ok", "self-test over loopback should say live: " + result.text


# ---------- b. widget: one connection for all tabs ----------

def test_widget_five_tabs_share_one_connection(server, browsers):
    b = browsers()
    handles = []
    for i in range(5):
        if i:
            b.switch_to.new_window("tab")
        b.get(server.url + "/widget-demo.html")
        handles.append(b.current_window_handle)

    wait_for(lambda: room_is(server, "widget-test", 1, 1), timeout=15, what="/api/rooms/widget-test online 1, connections 1")
    for h in handles:
        b.switch_to.window(h)
        wait_for(lambda: badges_show(b, 1), what=f"badges in tab {h} to show 1")
        assert "1 online" in text(b, ".byline .headcount-badge")
        assert text(b, "#sidebar-count") == "1 reader"
    leaders = []
    for h in handles:
        b.switch_to.window(h)
        st = b.execute_script("return Headcount.state()")
        assert st["mode"] == "shared"
        if st["leader"]:
            leaders.append(h)
            assert st["streams"] == ["widget-test"]
        else:
            assert st["streams"] == []
    assert len(leaders) == 1, f"expected exactly one leader tab, got {len(leaders)}"
    visitors = set()
    for h in handles:
        b.switch_to.window(h)
        visitors.add(b.execute_script("return Headcount.state().visitor"))
    assert len(visitors) == 1, "all tabs must use the same visitor id"

    # The tabs' chatter stays small: pings and needs, no message storm.
    b.switch_to.window(handles[-1])
    n = b.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const ch = new BroadcastChannel('headcount:' + location.origin);
        let n = 0;
        ch.onmessage = () => n++;
        setTimeout(() => { ch.close(); done(n); }, 4000);""")
    assert n < 40, f"{n} BroadcastChannel messages in 4 s between 5 tabs"

    # Close the leader: another tab takes over within a second, the count never leaves 1.
    # A follower listens on the channel for the new leader's announcement (timed in the browser).
    listener = next(h for h in handles if h != leaders[0])
    b.switch_to.window(listener)
    b.execute_script("""
        window.__leaderAt = null;
        const ch = new BroadcastChannel('headcount:' + location.origin);
        ch.onmessage = (e) => { if (e.data.t === 'leader' && !window.__leaderAt) window.__leaderAt = Date.now(); };""")
    b.switch_to.window(leaders[0])
    closed_at = b.execute_script("return Date.now()")
    b.close()
    handles.remove(leaders[0])
    t0 = time.monotonic()
    new_leader = None
    while new_leader is None and time.monotonic() - t0 < 3:
        for h in handles:
            b.switch_to.window(h)
            if is_leader(b):
                new_leader = h
                break
    assert new_leader, "no tab took over after the leader closed"
    b.switch_to.window(listener)
    leader_at = wait_for(lambda: b.execute_script("return window.__leaderAt"), timeout=3, what="the new leader's announcement")
    assert leader_at - closed_at < 1000, f"hand-over took {leader_at - closed_at} ms"

    end = time.monotonic() + 4
    while time.monotonic() < end:  # watch the hand-over: badges stay live at 1, the server keeps 1 visitor
        for h in handles:
            b.switch_to.window(h)
            bs = badges(b)
            assert all(c == "1" for c, _ in bs), f"badge count changed during hand-over: {bs}"
        assert server.room("widget-test")["online"] == 1
    wait_for(lambda: room_is(server, "widget-test", 1, 1), what="connections back to 1 after the hand-over")
    leaders = []
    for h in handles:
        b.switch_to.window(h)
        wait_for(lambda: badges_show(b, 1), what="badges connected after the hand-over")
        if is_leader(b):
            leaders.append(h)
    assert leaders == [new_leader]

    # The new leader drops the stream when no tab needs it any more.
    for h in handles:
        if h != new_leader:
            b.switch_to.window(h)
            b.get(server.url + "/")  # navigate away: the tab no longer needs widget-test
    wait_for(lambda: room_is(server, "widget-test", 1, 1), what="widget-test still streamed for the leader tab")
    b.switch_to.window(new_leader)
    b.get("about:blank")
    wait_for(lambda: room_is(server, "widget-test", 0, 0), timeout=15, what="widget-test stream dropped when nobody needs it")
    assert console_errors(b) == []


def test_widget_rooms_expire_when_a_tab_stops_answering(server, browsers):
    """A follower that stops answering the leader's pings loses its room within a few seconds."""
    b = browsers()
    b.get(server.url + "/widget-demo.html")
    wait_for(lambda: is_leader(b), what="first tab to lead")
    b.execute_script("Headcount.subscribe('leader-only', () => {})")
    b.switch_to.new_window("tab")
    b.get(server.url + "/widget-demo.html")
    b.execute_script("Headcount.subscribe('follower-room', () => {})")
    wait_for(lambda: room_is(server, "follower-room", 1, 1), what="leader to open the follower's room")
    assert not is_leader(b)
    # Simulate a tab that vanished without saying goodbye: silence its channel.
    b.execute_script("BroadcastChannel.prototype.postMessage = function () {};")
    wait_for(lambda: room_is(server, "follower-room", 0, 0), timeout=15, what="leader to expire the silent tab's room")
    assert room_is(server, "leader-only", 1, 1)


def test_widget_without_web_locks_uses_a_stream_per_tab(server, browsers):
    b = browsers()
    for i in range(2):
        if i:
            b.switch_to.new_window("tab")
        # the CDP script applies to the current tab only
        b.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {
            "source": "Object.defineProperty(Navigator.prototype, 'locks', {get: () => undefined});"})
        b.get(server.url + "/widget-demo.html")
    wait_for(lambda: badges_show(b, 1), what="badge to show 1 without Web Locks")
    st = b.execute_script("return Headcount.state()")
    assert st["mode"] == "solo" and st["leader"] and st["streams"] == ["widget-test"]
    # two streams, still one visitor
    wait_for(lambda: room_is(server, "widget-test", 1, 2), what="widget-test online 1, connections 2")


def test_widget_embedded_on_another_origin(server, browsers, pages):
    """A page on another origin loads widget.js from the server: badge, data-target and labels work (CORS)."""
    page = pages.add(f"""<p>Readers: <script src="{server.url}/widget.js" data-room="cross-origin" async></script></p>
<div id="mine"></div>
<script src="{server.url}/widget.js" data-room="cross-origin" data-target="#mine"
  data-template="{{count}} {{label}} here" data-label-one="reader" data-label-many="readers" async></script>""")
    b = browsers()
    b.get(page)
    wait_for(lambda: badges_show(b, 1), what="cross-origin badges to show 1")
    assert text(b, "#mine") == "1 reader here"
    assert b.execute_script("return Headcount.state().visitor") == b.execute_script("return localStorage.getItem('headcount.vid')")
    wait_for(lambda: room_is(server, "cross-origin", 1, 1), what="/api/rooms/cross-origin online 1, connections 1")
    b2 = browsers()
    b2.get(page)
    wait_for(lambda: text(b, "#mine") == "2 readers here", what="plural label with a second visitor")


# ---------- d. dashboard ----------

def test_dashboard_shows_totals_rooms_and_chart(server, browsers):
    visitor = browsers()
    visitor.get(server.url + "/widget-demo.html")
    wait_for(lambda: badges_show(visitor, 1), what="a visitor in widget-test")
    wait_for(lambda: server.get("/api/stats")["online"] == 1, what="/api/stats online 1 (earlier visitors gone)")

    b = browsers()
    b.get(server.url + "/dashboard")
    wait_for(lambda: text(b, "#site-total") == "1", what="#site-total to show 1")
    row = wait_for(lambda: b.find_element(By.CSS_SELECTOR, '#rooms-table tbody tr[data-room="widget-test"]'),
                   what="widget-test in the rooms table")
    cells = [c.text.strip() for c in row.find_elements(By.TAG_NAME, "td")]
    rooms = {r["room"]: r for r in server.get("/api/rooms?limit=20")["rooms"]}
    assert cells[0] == "widget-test"
    assert cells[1] == str(rooms["widget-test"]["online"]) == "1"
    assert cells[2] == str(rooms["widget-test"]["connections"])
    assert cells[3] == str(rooms["widget-test"]["peak"])

    def site_line_points():
        d = b.execute_script("const p = document.querySelector('#chart path.site-line'); return p && p.getAttribute('d');")
        return d and d.count("L") + 1 >= 2 and d
    wait_for(site_line_points, timeout=20, what="the site line in #chart to have points")
    assert b.find_element(By.CSS_SELECTOR, "#chart").tag_name == "svg"
    history = server.get("/api/history?window=3600")
    assert history["room"] is None and len(history["samples"]) >= 2

    row.click()
    assert b.find_element(By.ID, "chart-room").get_attribute("value") == "widget-test"
    wait_for(lambda: b.execute_script("const p = document.querySelector('#chart path.room-line'); return p && p.getAttribute('d');"),
             timeout=10, what="the room line for widget-test")
    assert server.get("/api/history?window=3600&room=widget-test")["room"] == "widget-test"

    # the number follows the live stream
    browsers.close(visitor)
    wait_for(lambda: text(b, "#site-total") == "0", timeout=15, what="#site-total back to 0")
    assert server.get("/api/stats")["online"] == 0
    assert console_errors(b) == []


@pytest.fixture(scope="module")
def secured(server):
    """A second server with an admin token and private rooms (priv-*) that need a signed join token."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    pid = server.spawn(["serve", "--port", str(port), "--leave-grace", "1", "--admin-token", ADMIN,
                        "--secret", SECRET, "--private-rooms", "priv-*"])
    with open(os.path.join(server.work, "admin.pid"), "w") as f:
        f.write(str(pid))
    try:
        Server.wait_ready(url, token=ADMIN)
        yield url
    finally:
        os.kill(pid, signal.SIGTERM)


def test_dashboard_with_admin_token(secured, browsers):
    url = secured
    assert http_json(url + "/api/stats")[0] == 401
    assert http_json(url + "/api/rooms?limit=20")[0] == 401
    assert http_json(url + "/api/history?window=60")[0] == 401
    b = browsers()
    b.get(url + "/dashboard")
    wait_for(lambda: b.find_element(By.ID, "auth").is_displayed(), what="the token form")
    b.find_element(By.ID, "auth-token").send_keys(ADMIN)
    b.find_element(By.CSS_SELECTOR, "#auth-form button").click()
    wait_for(lambda: text(b, "#site-total") == "0", what="#site-total after unlocking")
    wait_for(lambda: b.execute_script("return !!document.querySelector('#chart path.site-line')"), timeout=15,
             what="chart after unlocking")
    assert not b.find_element(By.ID, "auth").is_displayed()
    assert b.execute_script("return sessionStorage.getItem('headcount.adminToken')") == ADMIN
    # ?token= in the URL works too and is removed from the address bar
    b2 = browsers()
    b2.get(url + "/dashboard?token=" + ADMIN)
    wait_for(lambda: text(b2, "#site-total") == "0", what="#site-total with ?token=")
    assert "token" not in b2.current_url
    assert "connected" in classes(b2, "#live-dot")
    wait_for(lambda: b2.find_element(By.CSS_SELECTOR, "#rooms-table tbody tr"), what="rooms table rendered")


def test_widget_private_room_with_token(server, secured, browsers, pages):
    token = subprocess.run([server.bin, "token", "--room", "priv-club", "--secret", SECRET],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert token
    page = pages.add(f"""<p id="with"><script src="{secured}/widget.js" data-room="priv-club" data-token="{token}" async></script></p>""")
    no_token = pages.add(f"""<p id="without"><script src="{secured}/widget.js" data-room="priv-club" async></script></p>""")
    b = browsers()
    b.get(page)
    wait_for(lambda: badges_show(b, 1, expected=1), what="private room badge with a token")
    status, body = http_json(secured + "/api/rooms/priv-club", ADMIN)
    assert status == 200 and body["online"] == 1, body
    stranger = browsers()
    stranger.get(no_token)
    time.sleep(3)
    bs = badges(stranger)
    assert len(bs) == 1 and "headcount-disconnected" in bs[0][1].split(), f"no token must not connect: {bs}"
    assert http_json(secured + "/api/rooms/priv-club", ADMIN)[1]["online"] == 1


# ---------- e. screenshots ----------

def test_screenshots(server, browsers):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    others = [browsers() for _ in range(2)]
    for o in others:
        o.get(server.url + "/widget-demo.html")
        o.switch_to.new_window("tab")
        o.get(server.url + "/")
    b = browsers()
    b.get(server.url + "/")
    wait_for(lambda: demo_shows(b, 3), what="demo page to show 3")
    b.find_element(By.ID, "selftest").click()
    wait_for(lambda: (classes(b, "#selftest-result") or [None])[0] in ("ok", "warn", "bad"), timeout=25, what="self-test result")
    assert "ok" in classes(b, "#selftest-result"), text(b, "#selftest-result")
    b.execute_script("document.activeElement.blur()")
    time.sleep(0.5)
    b.save_screenshot(os.path.join(SCREENSHOTS, "demo.png"))

    b.get(server.url + "/widget-demo.html")
    wait_for(lambda: badges_show(b, 3), what="widget badges to show 3")
    wait_for(lambda: "2 other people" in text(b, "#others"), what="the subscribe() example")
    b.save_screenshot(os.path.join(SCREENSHOTS, "widget.png"))

    b.get(server.url + "/dashboard#room=widget-test")
    wait_for(lambda: text(b, "#site-total") not in ("", "–"), what="dashboard total")
    wait_for(lambda: b.execute_script("return !!document.querySelector('#chart path.room-line')"), timeout=15, what="chart")
    time.sleep(1)
    b.save_screenshot(os.path.join(SCREENSHOTS, "dashboard.png"))
    for name in ("demo.png", "widget.png", "dashboard.png"):
        assert os.path.getsize(os.path.join(SCREENSHOTS, name)) > 10_000


# ---------- c. server restart (last: it resets the server's state) ----------

def test_restart_turns_red_then_recovers_without_reload(server, browsers):
    b = browsers()
    b.get(server.url + "/?room=restart-test")
    demo = b.current_window_handle
    wait_for(lambda: demo_shows(b, 1), what="demo page connected")
    b.switch_to.new_window("tab")
    b.get(server.url + "/widget-demo.html")
    widget = b.current_window_handle
    wait_for(lambda: badges_show(b, 1), what="widget connected")
    for h in (demo, widget):
        b.switch_to.window(h)
        b.execute_script("window.__noReload = 42")

    server.stop()
    b.switch_to.window(widget)
    wait_for(lambda: all("headcount-disconnected" in k.split() and "headcount-connected" not in k.split() for _, k in badges(b)),
             timeout=15, what="badges to turn disconnected")
    assert all(c == "1" for c, _ in badges(b)), "the last count stays visible while disconnected"
    b.switch_to.window(demo)
    wait_for(lambda: "disconnected" in classes(b, "#status-dot") and text(b, "#status-text") == "disconnected",
             timeout=15, what="red dot on the demo page")
    assert "connected" not in classes(b, "#status-dot")
    time.sleep(2)  # stay down for a moment so the clients back off

    server.start()
    # backoff is capped at 30 s; after ~3 s down the next attempt is due within ~8 s
    wait_for(lambda: demo_shows(b, 1), timeout=40, what="demo page to reconnect and show 1")
    b.switch_to.window(widget)
    wait_for(lambda: badges_show(b, 1), timeout=40, what="widget to reconnect and show 1")
    for h in (demo, widget):
        b.switch_to.window(h)
        assert b.execute_script("return window.__noReload") == 42, "page was reloaded"
    wait_for(lambda: room_is(server, "restart-test", 1, 1), what="/api/rooms/restart-test online 1")
    wait_for(lambda: room_is(server, "widget-test", 1, 1), what="/api/rooms/widget-test online 1, connections 1")
