"""The ``shoal`` command's conventions: --version, shell completion, text printed as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shoal import __version__


def _shoal(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_version_option_prints_the_version() -> None:
    """`shoal --version` prints the package version and exits 0 without a command."""
    res = _shoal("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == __version__


def test_shell_completion_is_offered() -> None:
    """`shoal --help` offers completion installation and `--show-completion bash` prints a bash script."""
    res = _shoal("--help")
    assert res.returncode == 0, res.stderr
    assert "--install-completion" in res.stdout
    assert "--show-completion" in res.stdout
    script = subprocess.run(
        [str(Path(sys.executable).parent / "shoal"), "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0, script.stderr
    assert "complete -o default -F _shoal_completion shoal" in script.stdout
    assert "_SHOAL_COMPLETE=complete_bash" in script.stdout


def test_error_with_brackets_prints_them(tmp_path: Path) -> None:
    """An error naming the [parse] section prints "[parse]" literally, not eaten as rich markup."""
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[crawl]\nname = "x"\nseeds = ["http://127.0.0.1:9/"]\n\n[parse.tables.t]\nfrom = 5\n',
        encoding="utf-8",
    )
    res = _shoal("validate", str(spec), cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "the [parse] section is invalid" in res.stderr
    assert "Traceback" not in res.stderr


def test_help_texts_keep_bracketed_words() -> None:
    """`shoal parse --help` shows "[parse]" from its help texts."""
    res = _shoal("parse", "--help")
    assert res.returncode == 0, res.stderr
    assert "with its [parse] tables" in " ".join(res.stdout.split())


def test_log_format_json_is_checked() -> None:
    """An unknown --log-format is refused with the accepted values named."""
    res = _shoal("--log-format", "xml", "version")
    assert res.returncode == 2
    assert "use text or json" in res.stderr
