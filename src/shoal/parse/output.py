"""Writing tables: dedup, DataFrames, and files or SQL tables replaced atomically; reading them back.

:func:`dedup` keeps the newest capture of each canonical URL and of each
content hash; :func:`frame` builds a typed DataFrame (nullable integers,
aware datetimes, lists as objects); :func:`write_file` writes Parquet, CSV
or JSON lines to a temporary file in the target folder and renames it over
the old one; :func:`write_sql` swaps a staging table in. Readers never see a
half-written table. :func:`read_table` reads what the last parse wrote.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, Text, inspect, text
from sqlalchemy.dialects import mysql

from shoal.frontier.dialects import make_engine
from shoal.parse.config import ParseError, ParseSpec, TableSpec
from shoal.parse.pool import TablePart
from shoal.parse.quality import REPORT_JSON, load_report
from shoal.parse.section import parse_config
from shoal.spec import Spec, load_spec

if TYPE_CHECKING:  # pandas itself loads when a frame is built: `shoal report` does not need it
    import pandas as pd

__all__ = [
    "FORMATS",
    "FRONTIER_TABLES",
    "as_spec",
    "columns_of",
    "dedup",
    "frame",
    "out_folder",
    "read_table",
    "report_dir",
    "spec_folder",
    "sql_table_name",
    "write_file",
    "write_sql",
]

FORMATS = ("parquet", "csv", "jsonl", "sql")
FRONTIER_TABLES = frozenset({"crawls", "urls", "hosts", "workers", "events", "alembic_version"})
"""Names a table written to the frontier's database may not take."""


def as_spec(spec: Spec | str | os.PathLike[str]) -> Spec:
    """A spec object, loading it when given a file."""
    return spec if isinstance(spec, Spec) else load_spec(Path(spec))


def spec_folder(
    spec: Spec | str | os.PathLike[str], base: str | os.PathLike[str] | None = None
) -> Path | None:
    """The folder relative paths of a spec resolve against: ``base``, else the spec file's folder.

    For a spec object: its own :attr:`~shoal.spec.Spec.base_dir` (None, the
    working directory, for a spec that was not read from a file).
    """
    if base is not None:
        return Path(base).resolve()
    if isinstance(spec, Spec):
        return spec.base_dir
    return Path(spec).resolve().parent


def out_folder(ps: ParseSpec, spec: Spec, base: Path | None) -> Path:
    """``[parse] out`` with ``{name}`` filled in, resolved against the spec's folder."""
    p = Path(ps.out.replace("{name}", spec.name))
    return base / p if base is not None and not p.is_absolute() else p


# --------------------------------------------------------------------------- dedup and frames


def dedup(part: TablePart, keys: Sequence[str], all_captures: bool) -> tuple[list[int], int, int]:
    """Indices of the rows kept, rows dropped as the same URL, rows dropped as the same content."""
    idx = list(range(len(part.rows)))
    by_url = by_content = 0
    if "url" in keys and not all_captures:
        newest: dict[int, tuple[int, int]] = {}
        for i in idx:
            _u, seq, _p, ms, key, _h = part.meta[i]
            cand = (ms, seq)
            if key not in newest or cand > newest[key]:
                newest[key] = cand
        kept = [i for i in idx if (part.meta[i][3], part.meta[i][1]) == newest[part.meta[i][4]]]
        by_url = len(idx) - len(kept)
        idx = kept
    if "content" in keys:
        best: dict[str, tuple[int, int, int]] = {}
        for i in idx:
            _u, seq, pos, ms, _k, h = part.meta[i]
            assert h is not None
            cand3 = (ms, seq, -pos)
            if h not in best or cand3 > best[h]:
                best[h] = cand3
        kept = [
            i
            for i in idx
            if best[part.meta[i][5] or ""] == (part.meta[i][3], part.meta[i][1], -part.meta[i][2])
        ]
        by_content = len(idx) - len(kept)
        idx = kept
    idx.sort(key=lambda i: (_natural(part.meta[i][0]), part.meta[i][3], part.meta[i][2]))
    return idx, by_url, by_content


_DIGITS = re.compile(r"(\d+)")


def _natural(url: str) -> list[Any]:
    """A sort key that orders ``/posts/2`` before ``/posts/10`` (digit runs compare as numbers)."""
    return [int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(url))]


def columns_of(table: TableSpec, rows: Iterable[dict[str, Any]]) -> list[str]:
    """The declared columns, then any a table function added, in order of appearance."""
    cols = table.columns()
    seen = set(cols)
    for r in rows:
        for c in r:
            if c not in seen:
                seen.add(c)
                cols.append(c)
    return cols


def frame(table: TableSpec, rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """The rows as a DataFrame with each column's type (nullable ints, aware datetimes, lists as objects)."""
    import pandas as pd

    data: dict[str, Any] = {}
    for col in columns:
        values = [r.get(col) for r in rows]
        _kind, typ = table.column_type(col)
        if typ == "int":
            data[col] = pd.array(values, dtype="Int64")
        elif typ == "float":
            data[col] = pd.array(values, dtype="Float64")
        elif typ == "bool":
            data[col] = pd.array(values, dtype="boolean")
        elif typ == "datetime":
            aware = any(isinstance(v, datetime) and v.tzinfo is not None for v in values)
            data[col] = pd.to_datetime(pd.Series(values, dtype=object), utc=aware)
        else:
            data[col] = (
                pd.Series(values, dtype=object)
                if typ.startswith("list") or typ in ("date", "any")
                else values
            )
    return pd.DataFrame(data, columns=columns)


# --------------------------------------------------------------------------- writing


def _json_default(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return str(v)


def _flatten(df: pd.DataFrame) -> pd.DataFrame:
    """Lists and dicts as JSON text, for CSV and SQL, which have no list type."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and any(isinstance(v, (list, dict, tuple)) for v in out[col]):
            out[col] = [
                json.dumps(
                    list(v) if isinstance(v, tuple) else v,
                    ensure_ascii=False,
                    default=_json_default,
                )
                if isinstance(v, (list, dict, tuple))
                else v
                for v in out[col]
            ]
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_path(path: Path) -> Path:
    """A temporary file beside ``path``, with the mode a plain ``open`` would give it (the user's umask)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


def write_file(
    fmt: str,
    df: pd.DataFrame,
    rows: list[dict[str, Any]],
    columns: list[str],
    path: Path,
    *,
    csv_bom: bool = False,
) -> None:
    """Write one table file atomically: a temporary file in the same folder, then ``os.replace``.

    The file gets the mode a plain ``open`` gives (``0666`` less the umask);
    ``csv_bom`` starts a CSV with a UTF-8 byte order mark (Excel needs it to
    read Korean and other non-Latin text).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        elif fmt == "csv":
            _flatten(df).to_csv(tmp, index=False, encoding="utf-8-sig" if csv_bom else "utf-8")
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(
                        json.dumps(
                            {c: r.get(c) for c in columns},
                            ensure_ascii=False,
                            default=_json_default,
                        )
                    )
                    f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sql_table_name(ps: ParseSpec, crawl: str, table: str) -> str:
    """The SQL table a parse table is written to: ``sql_prefix`` (``{name}_``) + table, as an identifier."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", ps.sql_prefix.replace("{name}", crawl) + table)
    if name[0].isdigit():
        name = "t_" + name
    return name[:50]


def write_sql(df: pd.DataFrame, engine: Any, name: str) -> None:
    """Write ``df`` as table ``name``: into a staging table first, then swapped in atomically.

    PostgreSQL and SQLite have transactional DDL: the old table is dropped and
    the staging table renamed in one transaction, so readers see the old table
    or the new one, never none. MySQL/MariaDB commit each DDL statement, but
    one ``RENAME TABLE a TO b, c TO a`` statement is atomic, so the swap goes
    through a third name there. The staging name is fixed per table
    (``NAME__shoal_new``): run one parse of a table into a database at a time.
    """
    dialect = engine.dialect.name
    prep = engine.dialect.identifier_preparer
    new, old = f"{name}__shoal_new", f"{name}__shoal_old"
    flat = _flatten(df)
    dtypes: dict[str, Any] = {}
    for col in flat.columns:
        s = flat[col]
        if hasattr(s.dtype, "tz") and s.dtype.tz is not None:
            if dialect != "postgresql":  # only PostgreSQL keeps a time zone; store UTC without one
                flat[col] = s.dt.tz_convert("UTC").dt.tz_localize(None)
                dtypes[col] = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
            else:
                dtypes[col] = DateTime(timezone=True)
        elif str(s.dtype).startswith("datetime64"):
            dtypes[col] = DateTime().with_variant(
                mysql.DATETIME(fsp=6), "mysql"
            )  # MySQL drops fractions otherwise
        elif (s.dtype == object or str(s.dtype) in ("str", "string")) and not any(
            isinstance(v, (date, datetime)) for v in s.head(50)
        ):
            dtypes[col] = Text().with_variant(mysql.LONGTEXT(), "mysql")
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {prep.quote(new)}"))
    try:
        flat.to_sql(new, engine, index=False, chunksize=1000, dtype=dtypes)
        if dialect == "mysql":
            exists = inspect(engine).has_table(name)
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {prep.quote(old)}"))
                if exists:
                    conn.execute(
                        text(
                            f"RENAME TABLE {prep.quote(name)} TO {prep.quote(old)}, {prep.quote(new)} TO {prep.quote(name)}"
                        )
                    )
                    conn.execute(text(f"DROP TABLE {prep.quote(old)}"))
                else:
                    conn.execute(text(f"RENAME TABLE {prep.quote(new)} TO {prep.quote(name)}"))
        else:
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {prep.quote(name)}"))
                conn.execute(text(f"ALTER TABLE {prep.quote(new)} RENAME TO {prep.quote(name)}"))
    except BaseException:
        try:
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {prep.quote(new)}"))
        except Exception:  # pragma: no cover - best effort cleanup after a failure already raised
            pass
        raise


# --------------------------------------------------------------------------- reading back


def report_dir(spec: Spec, out: str | os.PathLike[str] | None, base: Path | None = None) -> Path:
    """The folder of a spec's outputs and quality report (``out`` wins when it is a folder)."""
    if out is not None and "://" not in str(out):
        return Path(out)
    return out_folder(parse_config(spec, import_functions=False), spec, base)


def read_table(
    spec_or_path: Spec | str | os.PathLike[str],
    table: str,
    *,
    out: str | os.PathLike[str] | None = None,
    db_url: str | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A table written by ``shoal parse`` as a pandas DataFrame.

    ``spec_or_path`` is a spec (object or file) or the output folder itself.
    The last parse's report says where the table went (a file in the output
    folder, or a SQL table); ``db_url`` reads the SQL table from that database
    instead (default for SQL outputs: the spec's frontier).
    """
    import pandas as pd

    spec: Spec | None = None
    p = Path(spec_or_path) if not isinstance(spec_or_path, Spec) else None
    if isinstance(spec_or_path, Spec) or (p is not None and p.is_file() and p.suffix == ".toml"):
        spec = as_spec(spec_or_path)
        folder = report_dir(spec, out, spec_folder(spec_or_path))
    else:
        assert p is not None
        folder = p.parent if p.suffix == ".json" else p
    fmt, location = "", ""
    if (folder / REPORT_JSON).exists():
        rep = load_report(folder)
        t = rep.tables.get(table)
        if t is not None:
            fmt, location = t.format, t.location
    if db_url is not None or fmt == "sql":
        url = db_url or (spec.frontier_url() if spec is not None else None)
        if url is None:
            raise ParseError(
                f"table {table!r} was written to SQL: pass db_url= (or the spec) to read it"
            )
        name = location or (
            sql_table_name(parse_config(spec, import_functions=False), spec.name, table)
            if spec
            else table
        )
        engine = make_engine(url)
        try:
            return pd.read_sql_table(name, engine, columns=list(columns) if columns else None)
        finally:
            engine.dispose()
    candidates = [Path(location)] if location else []
    candidates += [folder / f"{table}{ext}" for ext in (".parquet", ".csv", ".jsonl")]
    for c in candidates:
        if not c.exists():
            continue
        cols = list(columns) if columns else None
        if c.suffix == ".parquet":
            return pd.read_parquet(c, columns=cols)
        if c.suffix == ".csv":
            return pd.read_csv(c, usecols=cols)
        df = pd.read_json(c, lines=True, dtype=False)
        return df[cols] if cols else df
    raise ParseError(f"no output of table {table!r} in {folder}: run `shoal parse SPEC` first")
