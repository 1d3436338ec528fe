"""Crawl spec validation: a bad spec names the key, the value and what was expected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shoal.cli import app
from shoal.errors import SpecError
from shoal.spec import parse_spec

GOOD = """
[crawl]
name = "blog"
seeds = ["https://blog.example.com/"]

[[rules]]
name = "posts"
glob = "/posts/*"
kind = "detail"

[[rules]]
name = "lists"
regex = "/list\\\\?page=\\\\d+$"
kind = "list"
follow = ["a.post", ".pagination a"]
"""


def test_a_good_spec_parses_with_defaults() -> None:
    """A minimal spec gets the documented defaults."""
    spec = parse_spec(GOOD)
    assert spec.name == "blog"
    assert spec.politeness.delay == 1.0 and spec.politeness.robots
    assert spec.rules[1].follow == ["a.post", ".pagination a"]
    assert spec.frontier_url() == "sqlite:///shoal-data/blog/frontier.sqlite"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD.replace('kind = "detail"', 'kind = "page"'), 'rules["posts"].kind'),
        (GOOD + "\n[politeness]\ndelay = -1\n", "politeness.delay"),
        (GOOD + "\n[politeness]\ndelai = 3\n", "politeness.delai: unknown key"),
        (
            GOOD.replace('glob = "/posts/*"', 'glob = "/posts/*"\nregex = "x"'),
            "exactly one of 'glob' or 'regex'",
        ),
        (GOOD.replace('regex = "/list', 'regex = "(/list'), "does not compile"),
        (
            GOOD.replace('seeds = ["https://blog.example.com/"]', 'seeds = ["ftp://x/"]'),
            "crawl.seeds.0",
        ),
        (GOOD.replace('name = "blog"\n', ""), "crawl.name: required key is missing"),
        (GOOD + '\n[scope]\nallow_cidrs = ["10.0.0.0/33"]\n', "scope.allow_cidrs"),
        ("[crawl\nname=", "not valid TOML"),
    ],
)
def test_bad_specs_name_key_and_value(text: str, needle: str) -> None:
    """Each kind of mistake is reported with the offending key path."""
    with pytest.raises(SpecError) as err:
        parse_spec(text, "spec.toml")
    assert needle in str(err.value)


def test_validate_command_reports_problems_and_starts_nothing(tmp_path: Path) -> None:
    """`shoal validate` exits non-zero on a bad spec with the key named, and creates no data folder."""
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("delay", "x") + "\n[limits]\nmax_depth = -3\n")
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code != 0
    assert "limits.max_depth" in str(result.exception) or "limits.max_depth" in result.output
    assert not (tmp_path / "shoal-data").exists()
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    ok = CliRunner().invoke(app, ["validate", str(good)])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    ("section", "line", "needle"),
    [
        ("limits", "fetch_timeout = inf", "limits.fetch_timeout"),
        ("limits", "fetch_timeout = nan", "limits.fetch_timeout"),
        ("limits", "fetch_timeout = 1e300", "limits.fetch_timeout"),
        ("limits", "connect_timeout = inf", "limits.connect_timeout"),
        ("limits", "retry_max = 1e300", "limits.retry_max"),
        ("limits", "retry_base = -inf", "limits.retry_base"),
        ("limits", "max_depth = 1e300", "limits.max_depth"),
        ("worker", "lease_seconds = inf", "worker.lease_seconds"),
        ("worker", "lease_seconds = 1e300", "worker.lease_seconds"),
        ("worker", "db_grace_seconds = nan", "worker.db_grace_seconds"),
        ("worker", "flush_interval = inf", "worker.flush_interval"),
        ("politeness", "delay = nan", "politeness.delay"),
        ("politeness", "max_retry_after = inf", "politeness.max_retry_after"),
        ("politeness", "block_pause = 1e300", "politeness.block_pause"),
        ("politeness", "max_crawl_delay = inf", "politeness.max_crawl_delay"),
        ("politeness", 'user_agent = "shoal\\r\\nX-Evil: 1"', "politeness.user_agent"),
        ("politeness", 'user_agent = "shoal\\u0000"', "politeness.user_agent"),
        ("politeness", 'user_agent = ""', "politeness.user_agent"),
        ('scope.headers."a.example"', '"Bad Name" = "v"', "scope.headers"),
        ('scope.headers."a.example"', 'X-Ok = "v\\r\\nX-Evil: 1"', "scope.headers"),
        ('scope.headers."a.example"', 'X-Ok = "v\\u007f"', "scope.headers"),
        ('scope.headers."a.example"', 'X-Ok = { env = "NOT-A-NAME" }', "env"),
    ],
)
def test_values_that_would_crash_or_stall_are_refused(section: str, line: str, needle: str) -> None:
    """Infinite, huge or NaN durations and control characters in headers are validate errors naming the key."""
    text = GOOD + f"\n[{section}]\n{line}\n"
    with pytest.raises(SpecError) as err:
        parse_spec(text, "spec.toml")
    assert needle in str(err.value)


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\\\b", ".hidden", "", "x" * 65])
def test_crawl_names_that_leave_the_data_folder_are_refused(name: str, tmp_path: Path) -> None:
    """A crawl name like `..` or one with a path separator is refused before any file is written."""
    text = GOOD.replace('name = "blog"', f'name = "{name}"', 1)
    with pytest.raises(SpecError) as err:
        parse_spec(text, "spec.toml")
    assert "crawl.name" in str(err.value)


def test_header_values_may_come_from_the_environment() -> None:
    """`{ env = "VAR" }` is accepted in [scope.headers] and kept by name only."""
    spec = parse_spec(
        GOOD + '\n[scope.headers."blog.example.com"]\nCookie = { env = "BOARD_COOKIE" }\n'
    )
    value = spec.scope.headers["blog.example.com"]["Cookie"]
    assert not isinstance(value, str) and value.env == "BOARD_COOKIE"


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("²", None),
        ("١٢", None),
        ("１２", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),
    ],
)
def test_retry_after_is_parsed_per_rfc_9110(value: str | None, want: float | None) -> None:
    """Retry-After is ASCII delta-seconds or an HTTP-date; anything else (`²`, `-5`) counts as absent."""
    from shoal.fetch.classify import parse_retry_after

    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(value, now) == want


def test_relative_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    """A spec loaded from a file puts its relative frontier and archive in the file's folder."""
    from shoal.spec import load_spec

    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "blog.toml").write_text(GOOD)
    spec = load_spec(folder / "blog.toml")
    assert spec.frontier_url() == f"sqlite:///{folder}/shoal-data/blog/frontier.sqlite"
    assert spec.archive_dir() == f"{folder}/shoal-data/blog/warc"
    absolute = GOOD + '\n[storage]\nfrontier = "sqlite:////srv/f.sqlite"\narchive = "/srv/warc"\n'
    (folder / "abs.toml").write_text(absolute)
    spec = load_spec(folder / "abs.toml")
    assert spec.frontier_url() == "sqlite:////srv/f.sqlite" and spec.archive_dir() == "/srv/warc"
    other = GOOD + '\n[storage]\nfrontier = "postgresql://u@db/x"\n'
    (folder / "pg.toml").write_text(other)
    assert load_spec(folder / "pg.toml").frontier_url() == "postgresql://u@db/x"


def test_status_finds_the_data_of_a_spec_given_from_another_folder(
    demo_server: Any, tmp_path: Path
) -> None:
    """`shoal crawl specs/board.toml` then `shoal status ../specs/board.toml` from elsewhere see one crawl."""
    folder = tmp_path / "specs"
    elsewhere = tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "board.toml").write_text(
        f'[crawl]\nname = "board"\nseeds = ["{demo_server.base_url}/"]\n'
        "[scope]\nallow_private = true\n[politeness]\ndelay = 0.0\n[limits]\nmax_pages = 4\n"
    )
    run = [sys.executable, "-m", "shoal"]
    crawl = subprocess.run(
        [*run, "crawl", "specs/board.toml", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert crawl.returncode == 0, crawl.stdout + crawl.stderr
    assert (folder / "shoal-data" / "board" / "frontier.sqlite").exists()
    assert not (tmp_path / "shoal-data").exists()
    status = subprocess.run(
        [*run, "status", "../specs/board.toml", "--json"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        timeout=300,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["counts"]["done"] == 4
    assert not (elsewhere / "shoal-data").exists()


def test_validate_warns_about_seeds_the_address_policy_refuses(tmp_path: Path) -> None:
    """A loopback seed without allow_private passes validation with a warning naming the setting that allows it."""
    p = tmp_path / "local.toml"
    p.write_text(
        '[crawl]\nname = "local"\nseeds = ["http://127.0.0.1:8000/", "http://localhost/x"]\n'
    )
    res = subprocess.run(
        [sys.executable, "-m", "shoal", "validate", str(p)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    out = " ".join((res.stdout + res.stderr).split())
    assert out.count("warning") == 2
    assert 'allow_cidrs = ["127.0.0.1/32"]' in out and "allow_private = true" in out
    p.write_text(p.read_text() + "[scope]\nallow_private = true\n")
    res = subprocess.run(
        [sys.executable, "-m", "shoal", "validate", str(p)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and "warning" not in res.stdout + res.stderr
