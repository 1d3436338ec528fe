"""``shoal fleet up|status|down|logs``: thin commands over :mod:`shoal.fleet.control`.

Imports of the providers and the frontier happen inside the commands, so that
``shoal --help`` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["fleet_app"]

fleet_app = typer.Typer(
    help="Start, watch and end the workers of a crawl: local processes or EC2 instances.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
console = Console(stderr=True)
term = Console()

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="SHOAL_DB",
        help="The shared frontier database URL (default: the spec's [storage] frontier).",
    ),
]
CrawlOption = Annotated[
    str | None, typer.Option("--crawl", help="The crawl's name (default: from SPEC).")
]
SpecArg = Annotated[Path | None, typer.Argument(help="The crawl spec (TOML).")]


def _fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _context(spec_path: Path | None, crawl: str | None) -> tuple[Any, str, Path]:
    """(spec or None, crawl name, fleet folder)."""
    from shoal.fleet.control import fleet_dir
    from shoal.spec import load_spec

    spec = load_spec(spec_path) if spec_path is not None else None
    name = crawl or (spec.name if spec is not None else None)
    if not name:
        _fail("name the crawl: give the SPEC file or --crawl NAME")
    base = spec_path.resolve().parent if spec_path is not None else None
    return spec, name, fleet_dir(name, base)


@fleet_app.command("up")
def up(
    spec_path: Annotated[Path, typer.Argument(help="The crawl spec (TOML).")],
    db: DbOption = None,
    count: Annotated[int | None, typer.Option(help="How many workers to start.")] = None,
    provider: Annotated[
        str | None, typer.Option(help="local (processes here) or ec2 (default: [fleet] provider).")
    ] = None,
    netns: Annotated[
        bool | None,
        typer.Option(
            help="local: a network namespace (own address) per worker; default when root."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="local: fetches in flight per worker.")
    ] = None,
    region: Annotated[str | None, typer.Option(help="ec2: the AWS region.")] = None,
    instance_type: Annotated[str | None, typer.Option(help="ec2: the instance type.")] = None,
    ami: Annotated[
        str | None, typer.Option(help="ec2: the AMI (default: latest Debian 12).")
    ] = None,
    subnet: Annotated[
        str | None, typer.Option(help="ec2: the subnet (default VPC's otherwise).")
    ] = None,
    security_group: Annotated[
        list[str] | None,
        typer.Option(help="ec2: security group ids (default: one with no inbound rule)."),
    ] = None,
    key_name: Annotated[
        str | None, typer.Option(help="ec2: an SSH key pair name (optional).")
    ] = None,
    spot: Annotated[
        bool | None, typer.Option(help="ec2: spot instances instead of on-demand.")
    ] = None,
    bucket: Annotated[str | None, typer.Option(help="ec2: S3 bucket for the shoal wheel.")] = None,
    endpoint_url: Annotated[
        str | None, typer.Option(help="ec2: another AWS-compatible endpoint.")
    ] = None,
) -> None:
    """Submit the crawl if the database does not have it, then start N workers."""
    from shoal.crawl import start_crawl
    from shoal.errors import ShoalError
    from shoal.fleet.control import FleetConfig, ec2_options, fleet_up, make_provider, save_config
    from shoal.frontier.sql import SqlFrontier

    spec, name, folder = _context(spec_path, None)
    db_url = db or spec.frontier_url()
    kind = provider or spec.fleet.provider
    n = count or spec.fleet.count
    try:
        frontier = SqlFrontier(db_url, create=True)
        try:
            start_crawl(frontier, spec, spec_path.read_text("utf-8"))
        finally:
            frontier.close()
        ec2: dict[str, Any] | None = None
        if kind == "ec2":
            opts = ec2_options(
                spec,
                {
                    "region": region,
                    "instance_type": instance_type,
                    "ami": ami,
                    "subnet_id": subnet,
                    "security_group_ids": security_group or [],
                    "key_name": key_name,
                    "spot": spot,
                    "bucket": bucket,
                    "endpoint_url": endpoint_url,
                },
            )
            from dataclasses import asdict

            ec2 = asdict(opts)
        config = FleetConfig(name, kind, ec2=ec2, netns=netns)
        prov = make_provider(config, folder, db_url=db_url, concurrency=concurrency)
        save_config(folder, config)
        started = fleet_up(prov, n, db_url=db_url)
    except ShoalError as exc:
        _fail(str(exc))
    term.print(
        f"started {len(started)} {kind} worker(s) for crawl {name!r}: "
        + ", ".join(f"{i.id}" + (f" ({i.private_ip})" if i.private_ip else "") for i in started),
        markup=False,
    )
    term.print(
        f"watch with: shoal fleet status {spec_path}; end with: shoal fleet down {spec_path}",
        markup=False,
    )


def _provider(
    spec_path: Path | None, crawl: str | None, db: str | None
) -> tuple[Any, Any, str, str | None]:
    from shoal.fleet.control import load_config, make_provider

    spec, name, folder = _context(spec_path, crawl)
    config = load_config(folder, name)
    if config is None:
        _fail(
            f"no fleet of crawl {name!r} was started from here ({folder / 'fleet.json'} is missing)"
        )
    db_url = db or (spec.frontier_url() if spec is not None else None)
    return make_provider(config, folder, db_url=db_url), spec, name, db_url


@fleet_app.command("status")
def status(
    spec_path: SpecArg = None,
    crawl: CrawlOption = None,
    db: DbOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    stale: Annotated[
        float, typer.Option(help="Seconds without a heartbeat before a worker counts as dead.")
    ] = 90.0,
) -> None:
    """Instances as the provider sees them, joined with the frontier's workers; flags mismatches."""
    import json as _json

    from shoal.errors import ShoalError
    from shoal.fleet.control import fleet_status
    from shoal.frontier.sql import SqlFrontier

    try:
        prov, _spec, name, db_url = _provider(spec_path, crawl, db)
        frontier = SqlFrontier(db_url, create=False) if db_url else None
        try:
            crawl_id = frontier.get_crawl(name).id if frontier is not None else None
            rows = fleet_status(prov, frontier, crawl_id, stale)
        finally:
            if frontier is not None:
                frontier.close()
    except ShoalError as exc:
        _fail(str(exc))
    now = time.time()
    out: list[dict[str, Any]] = []
    for r in rows:
        i = r.instance
        out.append(
            {
                "instance": i.id if i else None,
                "state": i.state if i else None,
                "private_ip": i.private_ip if i else None,
                "public_ip": i.public_ip if i else None,
                "type": i.type if i else None,
                "launched_at": i.launched_at if i else None,
                "workers": [
                    {
                        "id": w.id,
                        "state": w.state,
                        "heartbeat_age_s": round(max(0.0, now - w.heartbeat_at / 1000), 1),
                        "pages_done": w.pages_done,
                        "pages_failed": w.pages_failed,
                    }
                    for w in r.workers
                ],
                "flag": r.flag,
            }
        )
    if json_out:
        term.print_json(_json.dumps({"crawl": name, "provider": prov.name, "instances": out}))
        return
    table = Table(title=f"fleet of crawl {name} ({prov.name})")
    for col in (
        "instance",
        "state",
        "private ip",
        "public ip",
        "type",
        "worker",
        "heartbeat",
        "done",
        "flag",
    ):
        table.add_column(col)
    for row in out:
        ws = row["workers"] or [None]
        for w in ws:
            table.add_row(
                escape(str(row["instance"] or "-")),
                escape(str(row["state"] or "-")),
                escape(str(row["private_ip"] or "-")),
                escape(str(row["public_ip"] or "-")),
                escape(str(row["type"] or "-")),
                escape(w["id"] if w else "-"),
                f"{w['heartbeat_age_s']} s" if w else "-",
                str(w["pages_done"]) if w else "-",
                escape(row["flag"] or ""),
            )
    term.print(table)


@fleet_app.command("down")
def down(
    spec_path: SpecArg = None,
    crawl: CrawlOption = None,
    db: DbOption = None,
) -> None:
    """End every worker of the fleet and wait until they are gone."""
    from shoal.errors import ShoalError

    try:
        prov, _spec, name, _db = _provider(spec_path, crawl, db)
        gone = prov.down()
        left = [i for i in prov.instances() if i.live]
    except ShoalError as exc:
        _fail(str(exc))
    term.print(
        f"ended {len(gone)} worker(s) of crawl {name!r}; {len(left)} still running", markup=False
    )
    if left:
        raise typer.Exit(1)


@fleet_app.command("logs")
def logs(
    spec_path: SpecArg = None,
    crawl: CrawlOption = None,
    instance: Annotated[str | None, typer.Option(help="Only this instance.")] = None,
    lines: Annotated[int, typer.Option(help="Lines per instance.")] = 50,
) -> None:
    """The last lines of each worker's log (local: its log file; EC2: the console output)."""
    from shoal.errors import ShoalError

    try:
        prov, _spec, _name, _db = _provider(spec_path, crawl, None)
        got = prov.logs(instance, lines)
    except ShoalError as exc:
        _fail(str(exc))
    for iid, text in got.items():
        term.rule(escape(iid))
        term.print(text, markup=False, highlight=False)
