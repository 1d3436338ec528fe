"""The ``shoal`` command: thin, it parses arguments and calls the parts.

Errors a user can fix are printed as one message naming the problem and the
fix (exit 2); a critical stop of a worker exits 3; an interrupted crawl 130
(except a crawl with revisit rules, which never finishes: stopping it is its
normal end, exit 0).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shoal import __version__
from shoal.errors import CriticalStop, ShoalError
from shoal.fleet.cli import fleet_app
from shoal.spec import Spec, load_spec

app = typer.Typer(
    name="shoal",
    help="Collect web pages into a durable WARC archive through a SQL frontier, then parse them into tables.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Help texts are printed as written: "[parse]" in a docstring must not vanish as rich markup.
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")
app.add_typer(fleet_app, name="fleet")

SpecFile = Annotated[Path, typer.Argument(help="The crawl spec (TOML).")]
StatusTarget = Annotated[str | None, typer.Argument(help="A spec file or a database URL.")]
FrontierDb = Annotated[str | None, typer.Option(help="The frontier database URL.")]
CrawlName = Annotated[
    str | None, typer.Option(help="Crawl name (default: the spec's, or the latest).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

console = Console(stderr=True)
term = Console()


def _fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _setup_logging(verbose: bool, log_format: str = "text") -> None:
    from rich.logging import RichHandler

    from shoal.secrets import RedactingFilter

    level = logging.DEBUG if verbose else logging.WARNING
    handler: logging.Handler
    if log_format == "json":
        from shoal.status.live import JsonLogFormatter  # only here: it loads SQLAlchemy

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLogFormatter())
    else:
        handler = RichHandler(console=console, show_path=False, markup=False)
    handler.addFilter(RedactingFilter())  # credentials in URLs and headers never reach the log
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler])
    logging.getLogger("shoal").setLevel(logging.DEBUG if verbose else logging.INFO)


def _load(path: Path) -> tuple[Spec, str]:
    spec = load_spec(path)
    return spec, path.read_text(encoding="utf-8")


def _print_version(value: bool) -> None:
    if value:
        term.print(__version__, markup=False)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="text (for people) or json (one JSON object a line on stderr, for machines).",
        ),
    ] = "text",
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    if log_format not in ("text", "json"):
        _fail(f"--log-format {log_format!r} is not known: use text or json")
    _setup_logging(verbose, log_format)


@app.command()
def version() -> None:
    """Print shoal's version."""
    term.print(__version__, markup=False)


@app.command()
def validate(spec: SpecFile) -> None:
    """Check a crawl spec; a bad one is rejected with the key, the value and what was expected."""
    from shoal.fetch.address import AddressPolicy
    from shoal.secrets import redact_url
    from shoal.spec import refused_seeds

    s = load_spec(spec)
    tables = ""
    if s.parse:
        try:
            from shoal.parse import parse_config
        except ImportError as exc:
            _fail(
                f"the spec has a [parse] section but the parse stage cannot load ({exc}): pip install 'shoal[parse]'"
            )
        ps = parse_config(s, source=str(spec), base=spec.resolve().parent)
        tables = f", {len(ps.tables)} parse table(s)"
    term.print(
        "[green]ok[/]: "
        + escape(
            f"crawl {s.name!r}, {len(s.crawl.seeds)} seed(s), {len(s.rules)} rule(s){tables}, "
            f"frontier {redact_url(s.frontier_url())}, archive {s.archive_dir()}"
        )
    )
    for line in refused_seeds(s, AddressPolicy(s.scope.allow_private, s.scope.allow_cidrs)):
        term.print("[yellow]warning[/]: " + escape(line))


def _print_summary(summary: dict[str, Any]) -> None:
    from shoal.status.render import render_crawl_summary

    term.print(render_crawl_summary(summary))


@contextmanager
def _critical_exits_3() -> Iterator[None]:
    """A worker that stopped on a critical error: its message, exit 3."""
    try:
        yield
    except CriticalStop as exc:
        _fail(exc.message, 3)


def _finish(spec: Spec, summary: dict[str, Any]) -> None:
    """Print a crawl's summary; an unfinished crawl exits 130 unless it never finishes (revisits)."""
    from shoal.crawl import stays_open

    _print_summary(summary)
    if not summary["finished"] and not stays_open(spec):
        raise typer.Exit(130)


@app.command()
def crawl(
    spec: SpecFile,
    db: Annotated[
        str | None,
        typer.Option(help="Frontier database URL (default: the spec's [storage] frontier)."),
    ] = None,
    progress: Annotated[
        bool,
        typer.Option(
            help="Show progress: in place on a terminal, else a log line every --progress-every seconds."
        ),
    ] = True,
    progress_every: Annotated[
        float, typer.Option(help="Seconds between progress log lines when no terminal is attached.")
    ] = 10.0,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON to this file.")
    ] = None,
) -> None:
    """Run a crawl here: SQLite frontier and local WARC files by default. Rerun to resume."""
    from shoal.crawl import crawl_here

    s, text = _load(spec)
    with _critical_exits_3():
        summary = crawl_here(
            s,
            text,
            console=console,
            db=db,
            progress=progress,
            summary_json=summary_json,
            every=progress_every,
        )
    _finish(s, summary)


@app.command()
def submit(
    spec: SpecFile,
    db: Annotated[
        str,
        typer.Option(
            help="The shared frontier database URL (postgresql://, mysql://, sqlite:///)."
        ),
    ],
    replace: Annotated[
        bool, typer.Option(help="Replace the stored spec of a crawl of the same name that differs.")
    ] = False,
) -> None:
    """Store a crawl, its spec and its seeds in a shared database for `shoal work` to run."""
    from shoal.crawl import submit_crawl

    s, text = _load(spec)
    submit_crawl(db, s, text, replace=replace, out=term)


@app.command()
def work(
    db: Annotated[
        str,
        typer.Option(
            envvar="SHOAL_DB",
            help="The shared frontier database URL, or ssm:/NAME to read it from an SSM SecureString.",
        ),
    ],
    crawl: Annotated[
        str | None, typer.Option(help="Crawl name (default: the latest submitted).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Fetches in flight in each process.")
    ] = None,
    processes: Annotated[int, typer.Option(help="Worker processes to start on this machine.")] = 1,
    progress: Annotated[bool, typer.Option(help="Show the live progress display.")] = False,
    db_grace: Annotated[
        float,
        typer.Option(help="Seconds to wait for the database at start (down or starting up)."),
    ] = 120.0,
) -> None:
    """Work on a submitted crawl until it is finished (any number of machines may do this at once)."""
    if db.startswith("ssm:"):
        from shoal.fleet.ec2 import resolve_db_url

        try:
            db = resolve_db_url(db)
        except ShoalError as exc:
            _fail(str(exc))
    if processes > 1:
        from shoal.crawl import work_in_processes

        codes = work_in_processes(
            db, processes, crawl=crawl, concurrency=concurrency, grace=db_grace
        )
        bad = [c for c in codes if c != 0]
        if bad:
            _fail(
                f"{len(bad)} of {processes} worker processes exited with an error (codes {bad})",
                bad[0],
            )
        return
    from shoal.crawl import work_on

    with _critical_exits_3():
        s, summary = work_on(
            db, crawl, console=console, concurrency=concurrency, grace=db_grace, progress=progress
        )
    _finish(s, summary)


@db_app.command("upgrade")
def db_upgrade(db: Annotated[str, typer.Option(help="The frontier database URL.")]) -> None:
    """Apply schema migrations to a frontier database (safe to run again)."""
    from shoal.frontier.dialects import make_engine
    from shoal.frontier.schema import current_revision, head_revision, upgrade
    from shoal.secrets import redact_url

    engine = make_engine(db)
    before = current_revision(engine)
    upgrade(engine)
    term.print(f"{redact_url(db)}: schema {before or 'empty'} → {head_revision()}", markup=False)


@app.command()
def status(
    target: StatusTarget = None,
    db: FrontierDb = None,
    crawl: CrawlName = None,
    as_json: AsJson = False,
    watch: Annotated[
        float,
        typer.Option(
            help="Refresh every N seconds (0: once): in place on a terminal, one line per refresh otherwise."
        ),
    ] = 0,
    html: Annotated[
        Path | None,
        typer.Option(
            help="Also write the dashboard page to this file (charts, hosts, workers, errors); rewritten on every refresh."
        ),
    ] = None,
) -> None:
    """Counts by status, error class and host; throughput and ETA; workers; the last errors. Works while a crawl runs."""
    from shoal.status import collect
    from shoal.status.live import watch as watch_status
    from shoal.status.render import render_status, summary_line
    from shoal.status.target import open_target

    frontier, info, report = open_target(target, db, crawl)

    def read() -> Any:
        st = collect(frontier, info, report=report)
        if html is not None:
            from shoal.status.dashboard import status_page

            html.write_text(status_page(st, refresh=watch), encoding="utf-8")
        return st

    try:
        if not watch:
            st = read()
            if as_json:
                term.print_json(json.dumps(st.as_dict(), default=str))
            else:
                term.print(render_status(st))
            if html is not None:
                console.print(f"wrote {html}", markup=False)
            return
        try:
            watch_status(
                read,
                render=render_status,
                summary=summary_line,
                as_json=(lambda st: st.as_dict()) if as_json else None,
                console=term,
                interval=watch,
            )
        except KeyboardInterrupt:
            return
    finally:
        frontier.close()


@app.command()
def dashboard(
    target: StatusTarget = None,
    db: FrontierDb = None,
    crawl: CrawlName = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (default loopback only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8766,
    refresh: Annotated[float, typer.Option(help="Seconds between page updates.")] = 2.0,
) -> None:
    """Serve a live dashboard page: pages/min and errors by class over time, hosts, workers, WARC bytes, parse quality, last errors."""
    from shoal.status import collect
    from shoal.status.dashboard import DashboardServer
    from shoal.status.target import open_target

    if refresh < 0.5:
        _fail(
            f"--refresh {refresh:g} is too short: the page reads the database once per refresh (0.5 s at least)"
        )
    frontier, info, report = open_target(target, db, crawl)
    try:
        try:
            server = DashboardServer(
                lambda: collect(frontier, info, report=report),
                host=host,
                port=port,
                refresh=refresh,
            )
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port} ({exc.strerror}): choose another with --port")
        term.print(
            f"dashboard of crawl {info.name!r} at {server.url} (Ctrl-C to stop)", markup=False
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.httpd.server_close()
    finally:
        frontier.close()


@app.command("try")
def try_(
    spec: SpecFile,
    url: Annotated[str, typer.Argument(help="The page to try.")],
    from_archive: Annotated[
        bool,
        typer.Option(
            "--from-archive", help="Read the latest capture from the archive, fetch nothing."
        ),
    ] = False,
    db: Annotated[
        str | None,
        typer.Option(help="Frontier database URL for --from-archive (default: the spec's)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Try the spec on one page: the rule that matches, the links followed or dropped (and why), each [parse] table's values, and each step's time."""
    from shoal.trial import render_trial, try_page

    result = try_page(load_spec(spec), url, from_archive=from_archive, db_url=db)
    if as_json:
        term.print_json(json.dumps(result.as_dict(), default=str, ensure_ascii=False))
    else:
        term.print(render_trial(result))


@app.command()
def parse(
    spec: Annotated[Path, typer.Argument(help="The crawl spec (TOML) with its [parse] tables.")],
    table: Annotated[
        list[str] | None, typer.Option("--table", "-t", help="Only these tables (repeatable).")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(help="parquet, csv, jsonl or sql (default: [parse] to, else parquet)."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            help="Output folder, or with --to sql a database URL (default: the frontier's)."
        ),
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="The frontier database URL (default: the spec's).")
    ] = None,
    all_captures: Annotated[
        bool, typer.Option("--all-captures", help="Every capture of a URL, not only the latest.")
    ] = False,
    processes: Annotated[
        int | None, typer.Option(help="Parser processes (default: the CPU count).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
    csv_bom: Annotated[
        bool,
        typer.Option(
            "--csv-bom", help="Start CSV files with a UTF-8 BOM (Excel needs it for Korean)."
        ),
    ] = False,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Parse only the captures made since the last incremental run and merge them.",
        ),
    ] = False,
) -> None:
    """Turn the archived pages into tables (Parquet/CSV/JSON lines/SQL) and a data-quality report."""
    from shoal.parse import run_parse

    result = run_parse(
        load_spec(spec),
        db_url=db,
        tables=table,
        to=to,
        out=out,
        all_captures=all_captures,
        processes=processes,
        progress=progress and console.is_terminal,
        console=console,
        csv_bom=csv_bom,
        base=spec.resolve().parent,
        incremental=incremental,
    )
    for line in result.summary_lines():
        term.print(line, soft_wrap=True, markup=False)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def report(
    target: Annotated[
        str, typer.Argument(help="A spec, the parse output folder, or its quality.json.")
    ],
    out: Annotated[
        str | None, typer.Option(help="The parse output folder, when not the spec's.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    html: Annotated[
        Path | None, typer.Option(help="Also write the report as an HTML page.")
    ] = None,
    fields: Annotated[bool, typer.Option(help="Show the per-field table.")] = True,
) -> None:
    """Show the data-quality report of the last `shoal parse`."""
    from shoal.parse import show_report

    show_report(target, out=out, console=term, as_json=as_json, html=html, fields=fields)


@app.command()
def doctor(
    chromium: Annotated[str | None, typer.Option(help="Path of the Chromium binary.")] = None,
    chromedriver: Annotated[str | None, typer.Option(help="Path of chromedriver.")] = None,
) -> None:
    """Check that Chromium and chromedriver are present and render a page; say how to install them if not."""
    from shoal.fetch.browser.doctor import check_browser

    checks = check_browser(chromium, chromedriver)
    t = Table(title="shoal doctor", show_header=True)
    for col in ("check", "ok", "detail", "what to do"):
        t.add_column(col)
    for c in checks:
        t.add_row(
            escape(c.name),
            "[green]yes[/]" if c.ok else "[red]no[/]",
            escape(c.detail),
            "" if c.ok else escape(c.hint),
        )
    term.print(t)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command("serve-demo")
def serve_demo(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765) -> None:
    """Serve the bundled demo site on 127.0.0.1 until Ctrl-C."""
    from shoal.demo.run import serve_site

    serve_site(port, out=term)


@app.command()
def demo(
    data: Annotated[
        Path, typer.Option(help="Where the demo's frontier, archive and tables go.")
    ] = Path("shoal-data/demo"),
    port: Annotated[
        int, typer.Option(help="Port of the demo site on 127.0.0.1 (fixed, so a rerun resumes).")
    ] = 8765,
    fresh: Annotated[bool, typer.Option(help="Start from an empty frontier and archive.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the live progress display.")] = True,
) -> None:
    """Serve the bundled demo site on 127.0.0.1, crawl it and print the summary. Safe to rerun."""
    from shoal.demo.run import run_demo

    with _critical_exits_3():
        code = run_demo(data, port, fresh=fresh, progress=progress, console=console, out=term)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``shoal`` console script."""
    try:
        app()
    except ShoalError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # the last line of defence: no bare traceback for users
        if os.environ.get("SHOAL_DEBUG"):
            raise
        console.print(f"[bold red]unexpected error:[/] {type(exc).__name__}: {escape(str(exc))}")
        console.print(
            "This is a bug in shoal; rerun with SHOAL_DEBUG=1 to see the traceback and report it."
        )
        sys.exit(1)
