"""The status page: a self-updating dashboard (``shoal dashboard``) and the same page as a file (``status --html``).

Guarantees:

- Charts are drawn by plotly; its JavaScript comes from the installed
  ``plotly`` package (:func:`plotly.offline.get_plotlyjs`): served by the
  dashboard at ``/plotly.min.js``, inlined in a page written to a file. No
  CDN, nothing fetched from the internet, no third-party script in this
  repository.
- Every number on the page is a value of :meth:`CrawlStatus.as_dict`
  (``shoal status --json``), printed whole (no thousands separators, never
  cut): each sits in an element with a ``data-k`` attribute naming its JSON
  path (``counts.done``, ``hosts.0.done``), which is what the browser
  test compares. Tables let cells grow instead of clipping them.
- Every piece of text from the crawl (URLs, hosts, error details) is HTML-escaped.
- The dashboard binds 127.0.0.1 unless told otherwise, serves read-only
  views, and reads one snapshot per refresh (shared by concurrent viewers
  within a second), so an open page costs the database one status read per
  refresh interval.
- The live page updates itself every ``refresh`` seconds by fetching
  ``/frame.json`` (the tables' HTML, the figures and the status JSON of one
  snapshot); a written file reloads itself when ``refresh`` is given.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shoal.status.collect import STATUSES, CrawlStatus
from shoal.status.live import format_eta

__all__ = ["DashboardServer", "figures", "fragment", "plotly_js", "status_page"]

log = logging.getLogger(__name__)

_COLORS = {
    "pending": "#3b8bd0",
    "leased": "#7a5cc4",
    "done": "#2a9d5b",
    "failed": "#d0453b",
    "skipped": "#d6a531",
}
_CLASS_COLORS = {
    "transient": "#e07b39",
    "permanent": "#b3312a",
    "blocked": "#6d2c91",
    "missing": "#c9a227",
    "critical": "#222222",
    "unknown": "#7f7f7f",
}


@cache
def plotly_js() -> bytes:
    """plotly.js as shipped inside the installed plotly package."""
    from plotly.offline import get_plotlyjs

    js: str = get_plotlyjs()
    return js.encode("utf-8")


# --------------------------------------------------------------------------- numbers and text


def _num(v: Any) -> str:
    """A number printed whole: ints as they are, floats without trailing zeros (never exponent form)."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = f"{v:.3f}".rstrip("0").rstrip(".")
        return text if text not in ("", "-0") else "0"
    return html.escape(str(v))


def _k(path: str, v: Any) -> str:
    """A number in an element naming its JSON path (what the browser test reads back)."""
    return f'<span class="n" data-k="{html.escape(path)}">{_num(v)}</span>'


def _t(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


# --------------------------------------------------------------------------- the tables


def _cards(st: CrawlStatus, d: dict[str, Any]) -> str:
    cells = [
        ("URLs", _k("total", d["total"])),
        *[(s, _k(f"counts.{s}", d["counts"][s])) for s in STATUSES],
        ("fetched", _k("fetched", d["fetched"])),
        ("pages/min (last minute)", _k("pages_last_minute", d["pages_last_minute"])),
        ("pages/s (10 min)", _k("recent_pages_per_second", d["recent_pages_per_second"])),
        ("pages/s (overall)", _k("pages_per_second", d["pages_per_second"])),
        (
            "ETA",
            f'<span data-eta="{_t(d["eta_s"])}">{_t(format_eta(st.eta_s))}</span>',
        ),
        ("WARC bytes", _k("bytes_archived", d["bytes_archived"])),
        ("retried URLs", _k("retried", d["retried"])),
        ("returned from a dead worker", _k("lease_lost", d["lease_lost"])),
        ("workers alive", _k("workers_alive", d["workers_alive"])),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="v">{v}</div><div class="l">{_t(label)}</div></div>'
            for label, v in cells
        )
        + "</div>"
    )


def _table(cls: str, headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_t(empty)}</p>'
    head = "".join(f"<th>{_t(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _by_key(title: str, key: str, d: dict[str, Any]) -> str:
    rows = [[_t(k), _k(f"{key}.{k}", v)] for k, v in d[key].items()]
    return f"<div><h3>{_t(title)}</h3>{_table('small', ['', 'URLs'], rows, 'none')}</div>"


def fragment(st: CrawlStatus, d: dict[str, Any] | None = None) -> str:
    """The page's tables and numbers as HTML (replaced whole on every refresh)."""
    d = d if d is not None else st.as_dict()
    hosts = [
        [
            _t(h["host"]),
            *[_k(f"hosts.{i}.{s}", h[s]) for s in STATUSES],
            _k(f"hosts.{i}.delay_s", h["delay_s"]) + " s",
            "in " + _k(f"hosts.{i}.next_slot_in_s", h["next_slot_in_s"]) + " s",
            (
                f'<span class="bad">paused ({_t(h["pause_reason"])}, {_k(f"hosts.{i}.paused_for_s", h["paused_for_s"])} s)</span>'
                if h["paused"]
                else "ok"
            ),
        ]
        for i, h in enumerate(d["hosts"])
    ]
    workers = [
        [
            _t(w["id"]),
            _t(w["hostname"]),
            _t(w["ip"] or "-"),
            _t(
                w["state"]
                if w["state"] != "running"
                else ("alive" if w["alive"] else "dead (no heartbeat)")
            ),
            _k(f"workers.{i}.heartbeat_age_s", w["heartbeat_age_s"]) + " s ago",
            _k(f"workers.{i}.pages_done", w["pages_done"]),
            _k(f"workers.{i}.pages_failed", w["pages_failed"]),
            _k(f"workers.{i}.bytes_archived", w["bytes_archived"]),
        ]
        for i, w in enumerate(d["workers"])
    ]
    machines = [
        [
            _t(m["hostname"]),
            _t(m["ip"] or "-"),
            _k(f"machines.{i}.workers", m["workers"]),
            _k(f"machines.{i}.alive", m["alive"]),
            _k(f"machines.{i}.heartbeat_age_s", m["heartbeat_age_s"]) + " s ago",
            _k(f"machines.{i}.pages_done", m["pages_done"]),
            _k(f"machines.{i}.bytes_archived", m["bytes_archived"]),
        ]
        for i, m in enumerate(d["machines"])
    ]
    errors = [
        [
            _t(_when(e["at"])),
            _t(e["class"]),
            "retrying" if e["status"] == "pending" else "failed",
            _k(f"last_errors.{i}.http_status", e["http_status"]),
            f'<a class="url" href="{_t(e["url"])}" rel="noreferrer">{_t(e["url"])}</a>',
            f'<span class="detail">{_t(e["detail"] or "")}</span>',
        ]
        for i, e in enumerate(d["last_errors"])
    ]
    parse = d.get("parse")
    if parse is None:
        parse_html = '<p class="empty">no parse report yet (run <code>shoal parse SPEC</code>)</p>'
    else:
        rows = [
            [
                _t(t["table"]),
                _k(f"parse.tables.{i}.pages", t["pages"]),
                _k(f"parse.tables.{i}.rows", t["rows"]),
                _k(f"parse.tables.{i}.errors", t["errors"]),
                _k(f"parse.tables.{i}.missing_required", t["missing_required"]),
                _k(f"parse.tables.{i}.cast_errors", t["cast_errors"]),
                _k(f"parse.tables.{i}.redacted", t["redacted"]),
            ]
            for i, t in enumerate(parse["tables"])
        ]
        verdict = "quality ok" if parse["ok"] else "quality FAILED: " + "; ".join(parse["failures"])
        parse_html = (
            f'<p class="{"ok" if parse["ok"] else "bad"}">{_t(verdict)} '
            f"(report {_t(parse['report'])}, {_t(parse['generated_at'])})</p>"
            + _table(
                "parse",
                [
                    "table",
                    "pages",
                    "rows",
                    "failed pages",
                    "required missing",
                    "not cast",
                    "redacted",
                ],
                rows,
                "no tables",
            )
        )
    budget = (
        f" of {_k('max_pages', d['max_pages'])} (max_pages)" if d["max_pages"] is not None else ""
    )
    return (
        f'<p class="meta">state <b data-state="{_t(d["state"])}">{_t(d["state"])}</b> · '
        f"database {_t(d['database'])} · read at {_t(_when(d['now_ms']))} UTC · "
        f"fetched {_k('fetched', d['fetched'])}{budget}</p>"
        + _cards(st, d)
        + '<div class="row">'
        + _by_key("failed by error class", "failed", d)
        + _by_key("skipped by reason", "skipped", d)
        + _by_key("HTTP status", "http_status", d)
        + "</div>"
        + "<h2>hosts</h2>"
        + _table(
            "hosts",
            ["host", *STATUSES, "delay", "next slot", "state"],
            hosts,
            "no hosts yet",
        )
        + "<h2>workers</h2>"
        + _table(
            "workers",
            ["worker", "machine", "ip", "state", "heartbeat", "done", "failed", "WARC bytes"],
            workers,
            "no worker has joined this crawl",
        )
        + "<h3>machines</h3>"
        + _table(
            "machines",
            ["machine", "ip", "workers", "alive", "heartbeat", "done", "WARC bytes"],
            machines,
            "none",
        )
        + "<h2>parse quality (last run)</h2>"
        + parse_html
        + "<h2>last errors</h2>"
        + _table(
            "errors", ["when (UTC)", "class", "state", "HTTP", "url", "detail"], errors, "no errors"
        )
    )


# --------------------------------------------------------------------------- the charts


def figures(st: CrawlStatus) -> dict[str, Any]:
    """The plotly figures (as JSON-ready dicts): pages per minute, errors by class per minute, URLs by status."""
    import plotly.graph_objects as go

    def minute_label(m: int) -> str:
        return datetime.fromtimestamp(m * 60, UTC).strftime("%Y-%m-%d %H:%M")

    xs = [minute_label(b["minute"]) for b in st.timeline]
    layout = {
        "template": "plotly_white",
        "barmode": "stack",
        "height": 300,
        "margin": {"l": 60, "r": 20, "t": 40, "b": 60},
        "xaxis": {"type": "date", "title": {"text": "minute (UTC)"}},
        "legend": {"orientation": "h", "y": -0.3},
    }
    pages = go.Figure(
        [
            go.Bar(
                name="done", x=xs, y=[b["done"] for b in st.timeline], marker_color=_COLORS["done"]
            ),
            go.Bar(
                name="failed",
                x=xs,
                y=[b["failed"] for b in st.timeline],
                marker_color=_COLORS["failed"],
            ),
        ],
        layout={
            **layout,
            "title": {"text": "pages per minute"},
            "yaxis": {"title": {"text": "pages"}},
        },
    )
    classes = sorted({c for b in st.timeline for c in b["errors"]})
    errors = go.Figure(
        [
            go.Bar(
                name=c,
                x=xs,
                y=[b["errors"].get(c, 0) for b in st.timeline],
                marker_color=_CLASS_COLORS.get(c, "#7f7f7f"),
            )
            for c in classes
        ],
        layout={
            **layout,
            "title": {"text": "errors by class per minute"},
            "yaxis": {"title": {"text": "failed"}},
        },
    )
    statuses = go.Figure(
        [
            go.Bar(
                x=[st.counts.get(s, 0) for s in STATUSES],
                y=list(STATUSES),
                orientation="h",
                marker_color=[_COLORS[s] for s in STATUSES],
                text=[str(st.counts.get(s, 0)) for s in STATUSES],
                textposition="auto",
                cliponaxis=False,
            )
        ],
        layout={
            "template": "plotly_white",
            "height": 300,
            "margin": {"l": 80, "r": 40, "t": 40, "b": 40},
            "title": {"text": "URLs by status"},
            "yaxis": {"autorange": "reversed", "automargin": True},
            "xaxis": {"automargin": True},
        },
    )
    return {
        name: json.loads(fig.to_json())
        for name, fig in (("pages", pages), ("errors", errors), ("statuses", statuses))
    }


# --------------------------------------------------------------------------- the page

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans KR",sans-serif;margin:1.5em;color:#222}
h1{margin:0 0 .2em}h2{margin:1.4em 0 .4em}h3{margin:1em 0 .3em}
.meta{color:#555}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:1em 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.5em .8em;min-width:7em}
.card .v{font-size:1.4em;font-weight:600;white-space:nowrap}
.card .l{color:#666;font-size:.85em}
.row{display:flex;flex-wrap:wrap;gap:2em}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:1em}
table{border-collapse:collapse;margin:.3em 0}
th,td{padding:3px 10px;text-align:left;vertical-align:top;border-bottom:1px solid #eee}
td .n,td{white-space:nowrap}
.n{font-variant-numeric:tabular-nums}
table.errors td:nth-child(5),table.errors td:nth-child(6){white-space:normal;overflow-wrap:anywhere;max-width:40em}
.bad{color:#b3312a}.ok{color:#2a7d4b}.empty{color:#888}
#updated{color:#888;font-size:.85em}
"""

_JS = """
(function () {
  const cfg = {displaylogo: false, displayModeBar: false, responsive: true};
  function draw(figs) {
    for (const name of Object.keys(figs)) {
      const el = document.getElementById('chart-' + name);
      if (el) Plotly.react(el, figs[name].data, figs[name].layout, cfg);
    }
  }
  draw(JSON.parse(document.getElementById('figures').textContent));
  const refresh = Number(document.body.dataset.refresh || 0);
  const live = document.body.dataset.live === '1';
  if (!live || !refresh) return;
  async function tick() {
    try {
      const r = await fetch('frame.json', {cache: 'no-store'});
      if (r.ok) {
        const f = await r.json();
        document.getElementById('frame').innerHTML = f.html;
        draw(f.figures);
        document.getElementById('updated').textContent = 'updated ' + new Date().toISOString();
      } else {
        document.getElementById('updated').textContent = 'status read failed: HTTP ' + r.status;
      }
    } catch (e) {
      document.getElementById('updated').textContent = 'dashboard unreachable, retrying';
    }
    setTimeout(tick, refresh * 1000);
  }
  setTimeout(tick, refresh * 1000);
})();
"""


def _json_script(data: Any) -> str:
    # "</" cannot end the script element early, whatever the data holds.
    return json.dumps(data, default=str).replace("</", "<\\/")


def status_page(st: CrawlStatus, *, refresh: float = 0, live: bool = False) -> str:
    """The whole page. ``live``: served by the dashboard (plotly.js at ``plotly.min.js``, updates by
    fetching ``frame.json``); otherwise self-contained (plotly.js inlined), reloading every
    ``refresh`` seconds when given."""
    d = st.as_dict()
    if live:
        script = '<script src="plotly.min.js"></script>'
        reload = ""
    else:
        script = (
            "<script>" + plotly_js().decode("utf-8").replace("</script", "<\\/script") + "</script>"
        )
        reload = f'<meta http-equiv="refresh" content="{refresh:g}">' if refresh else ""
    every = f"updates every {refresh:g} s" if refresh else "a snapshot (no refresh)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">{reload}
<title>shoal: {_t(st.crawl)}</title>
<style>{_CSS}</style>
{script}
</head>
<body data-refresh="{refresh:g}" data-live="{1 if live else 0}">
<h1>crawl {_t(st.crawl)}</h1>
<p id="updated">{_t(every)}</p>
<div class="charts"><div id="chart-pages"></div><div id="chart-errors"></div><div id="chart-statuses"></div></div>
<div id="frame">{fragment(st, d)}</div>
<script type="application/json" id="figures">{_json_script(figures(st))}</script>
<script type="application/json" id="status">{_json_script(d)}</script>
<script>{_JS}</script>
</body></html>
"""


# --------------------------------------------------------------------------- the server


class DashboardServer:
    """``shoal dashboard``: the live page on ``host:port`` (127.0.0.1 by default), in a thread.

    ``read`` returns a fresh :class:`CrawlStatus`; it is called at most once per
    second whatever the number of viewers. Port 0 picks a free port
    (:attr:`url` says which).
    """

    def __init__(
        self,
        read: Callable[[], CrawlStatus],
        *,
        host: str = "127.0.0.1",
        port: int = 8766,
        refresh: float = 2.0,
    ) -> None:
        self.read = read
        self.refresh = refresh
        self._lock = threading.Lock()
        self._cached: tuple[float, CrawlStatus] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("dashboard: " + format, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the page is."""
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}/"

    def snapshot(self) -> CrawlStatus:
        """The status, read again when the last read is a second old."""
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= 1.0:
                self._cached = (now, self.read())
            return self._cached[1]

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?", 1)[0]
        try:
            if path == "/plotly.min.js":
                self._send(req, 200, "application/javascript", plotly_js(), cache=True)
            elif path == "/":
                page = status_page(self.snapshot(), refresh=self.refresh, live=True)
                self._send(req, 200, "text/html; charset=utf-8", page.encode("utf-8"))
            elif path == "/frame.json":
                st = self.snapshot()
                d = st.as_dict()
                body = {"status": d, "html": fragment(st, d), "figures": figures(st)}
                self._send(
                    req, 200, "application/json", json.dumps(body, default=str).encode("utf-8")
                )
            elif path == "/status.json":
                body_s = json.dumps(self.snapshot().as_dict(), default=str)
                self._send(req, 200, "application/json", body_s.encode("utf-8"))
            else:
                self._send(req, 404, "text/plain; charset=utf-8", b"not found")
        except Exception as exc:  # the database went away: say so, keep serving
            log.warning("dashboard: reading the status failed: %s", exc)
            self._send(req, 503, "text/plain; charset=utf-8", f"status read failed: {exc}".encode())

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes, cache: bool = False
    ) -> None:
        req.send_response(code)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Cache-Control", "max-age=86400" if cache else "no-store")
        req.send_header("X-Content-Type-Options", "nosniff")
        req.end_headers()
        req.wfile.write(body)

    def start(self) -> DashboardServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="shoal-dashboard", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(10)
