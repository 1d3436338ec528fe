"""``shoal demo``: serve the bundled site on 127.0.0.1, crawl it into a data folder, parse it.

Safe to rerun: the port is fixed so that the spec's URLs stay the same and a
rerun resumes the crawl; ``fresh`` starts from an empty folder instead.
``shoal serve-demo`` only serves the site (:func:`serve_site`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console

from shoal.crawl import crawl_here
from shoal.demo.expected import spec_text
from shoal.demo.site import start_in_thread
from shoal.errors import ShoalError
from shoal.spec import parse_spec
from shoal.status.render import render_crawl_summary

__all__ = ["run_demo", "serve_site"]


def run_demo(
    data: Path, port: int, *, fresh: bool, progress: bool, console: Console, out: Console
) -> int:
    """Serve the site on ``127.0.0.1:port``, crawl it into ``data`` and parse it; returns the parse's exit code.

    The spec (``data/demo.toml``) and the crawl's summary (``summary.json``)
    are written to ``data``; the summary and the parse's lines are printed on
    ``out``, progress and messages on ``console``. A port that cannot be served
    raises :class:`~shoal.errors.ShoalError` naming ``--port``; a worker's
    critical stop raises :class:`~shoal.errors.CriticalStop`.
    """
    if fresh and data.exists():
        shutil.rmtree(data)
    try:
        server = start_in_thread(port=port)
    except OSError as exc:
        raise ShoalError(
            f"cannot serve the demo site on 127.0.0.1:{port} ({exc.strerror}): choose another port with --port"
        ) from exc
    try:
        data.mkdir(parents=True, exist_ok=True)
        text = spec_text(server.base_url, data.resolve())
        spec_path = data / "demo.toml"
        spec_path.write_text(text, encoding="utf-8")
        out.print(f"demo site at {server.base_url}/ — spec written to {spec_path}", markup=False)
        spec = parse_spec(text, str(spec_path))
        summary = crawl_here(
            spec, text, console=console, progress=progress, summary_json=data / "summary.json"
        )
        out.print(render_crawl_summary(summary))
    finally:
        server.stop()
    from shoal.parse import run_parse  # the parse stage's extras load only once the crawl is done

    result = run_parse(spec, progress=progress and console.is_terminal, console=console)
    for line in result.summary_lines():
        out.print(line, soft_wrap=True, markup=False)
    return result.exit_code


def serve_site(port: int, *, out: Console) -> None:
    """Serve the site on ``127.0.0.1:port`` until Ctrl-C, saying where on ``out``."""
    server = start_in_thread(port=port)
    out.print(f"demo site at {server.base_url}/ (Ctrl-C to stop)", markup=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
