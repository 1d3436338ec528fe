"""Crawl spec validation: a bad spec names the key, the value and what was expected."""

from __future__ import annotations

from pathlib import Path

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
