"""Typed configuration: TOML file, then environment, then command-line flags.

Precedence is flag > environment > file. Every string may use ``${VAR}`` to pull a value from
the environment (the usual way to keep passwords out of the file). Validation errors name the
file, the line and the key. Passwords are :class:`connectors.endpoint.Secret` objects and never
appear in ``repr``, logs or messages. The reference for every key is ``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connectors.base import TableFilter
from connectors.endpoint import Endpoint
from connectors.engine import get_engine, source_option_keys
from connectors.errors import ConfigError
from connectors.model import TableId

__all__ = [
    "ApplyConfig",
    "Config",
    "ReceiveConfig",
    "ShipConfig",
    "SnapshotConfig",
    "TablesConfig",
    "TrailConfig",
    "VerifyConfig",
    "load",
    "parse_duration",
]

DEFAULT_FILE = "redoline.toml"

ENV_CONFIG = "REDOLINE_CONFIG"
ENV_SOURCE_URL = "REDOLINE_SOURCE_URL"
ENV_SOURCE_PASSWORD = "REDOLINE_SOURCE_PASSWORD"
ENV_TARGET_URL = "REDOLINE_TARGET_URL"
ENV_TARGET_PASSWORD = "REDOLINE_TARGET_PASSWORD"
ENV_TRAIL_DIR = "REDOLINE_TRAIL_DIR"

# Known keys per section; anything else is a typo we report rather than ignore.
_KEYS: dict[str, set[str]] = {
    # plus each engine's own keys (its descriptor's options: _source_keys)
    "source": {"url", "password", "id", "retry_for", "heartbeat"},
    "target": {"url", "password", "id", "retry_for"},
    "trail": {
        "dir",
        "segment_mb",
        "key_file",
        "key_env",
        "keep_days",
        "keep_bytes",
        "keep_segments",
    },
    "tables": {"include", "exclude", "columns", "where", "rename"},
    "apply": {
        "batch_rows",
        "batch_ms",
        "on_error",
        "reject_file",
        "collision",
        "parallel",
        "skip_ddl",
        "source_column",
        "ignore_origins",
        "delay",
    },
    "snapshot": {"workers", "chunk_rows"},
    "verify": {"chunk_rows", "workers", "max_diffs", "recheck_wait"},
    "state": {"dir"},
    "ship": {"to", "name", "cert", "key", "ca", "token_file", "token_env", "retry_for"},
    "receive": {
        "listen",
        "dir",
        "sources",
        "cert",
        "key",
        "ca",
        "token_file",
        "token_env",
        "retry_for",
    },
}


@dataclass(frozen=True)
class SourceConfig:
    """One source database."""

    name: str
    endpoint: Endpoint
    #: the id stamped on every transaction (origin) and on the trail; default: the name
    id: str
    #: seconds a run keeps retrying an unreachable source before it exits 75; None: the
    #: default (RETRY_FOR_CAUGHT_UP for --until-caught-up runs, forever for continuous ones)
    retry_for: float | None = None
    #: seconds between heartbeat rows capture writes on the source (capture/heartbeat.py);
    #: 0: none, lag is estimated from positions
    heartbeat: float = 0.0
    #: the engine-specific keys as written (file, then flags); read them typed through
    #: :attr:`options`
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def options(self) -> Any:
        """The engine's typed options (``connectors/<engine>/descriptor.py``: MySQL
        ``server_id`` and ``decoder``, PostgreSQL ``slot`` and ``publication``)."""
        return get_engine(self.endpoint.engine).parse_options(dict(self.settings))

    def engine_options(self) -> dict[str, Any]:
        """:attr:`options` as the keyword dict the engine's reader and snapshot take."""
        return {k: v for k, v in dataclasses.asdict(self.options).items() if v is not None}

    def retry_budget(self, until_caught_up: bool) -> float | None:
        """How long this run may retry: cron runs must end, services may wait forever."""
        return retry_budget(self.retry_for, until_caught_up)


#: default retry budget of an --until-caught-up run (a cron job must end)
RETRY_FOR_CAUGHT_UP = 300.0


def retry_budget(retry_for: float | None, until_caught_up: bool) -> float | None:
    """``retry_for`` when configured; else finite for cron runs, forever for services."""
    if retry_for is not None:
        return retry_for
    return RETRY_FOR_CAUGHT_UP if until_caught_up else None


@dataclass(frozen=True)
class TargetConfig:
    """One target database."""

    name: str
    endpoint: Endpoint
    id: str
    #: seconds apply keeps reconnecting to an unreachable target before it exits 75; None:
    #: the default (as for sources: finite for --until-caught-up runs, else forever)
    retry_for: float | None = None

    def retry_budget(self, until_caught_up: bool) -> float | None:
        """How long this run may retry: cron runs must end, services may wait forever."""
        return retry_budget(self.retry_for, until_caught_up)


@dataclass(frozen=True)
class TrailConfig:
    dir: Path = Path("trail")
    segment_mb: float = 10.0
    key_file: Path | None = None
    key_env: str | None = None
    keep_days: float | None = None
    keep_bytes: int | None = None
    keep_segments: int | None = None

    @property
    def segment_bytes(self) -> int:
        return int(self.segment_mb * 1_000_000)

    def key(self) -> bytes | None:
        """The 32-byte AES key, from ``key_file`` or ``key_env`` (hex or raw bytes)."""
        raw: bytes | None = None
        if self.key_file is not None:
            try:
                raw = self.key_file.read_bytes().strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the trail key file {self.key_file}: {exc.strerror}",
                    key="trail.key_file",
                ) from None
        elif self.key_env:
            value = os.environ.get(self.key_env)
            if not value:
                raise ConfigError(
                    f"the environment variable {self.key_env} (trail.key_env) is not set",
                    key="trail.key_env",
                )
            raw = value.strip().encode()
        if raw is None:
            return None
        if len(raw) == 64 and re.fullmatch(rb"[0-9a-fA-F]{64}", raw):
            return bytes.fromhex(raw.decode())
        if len(raw) == 32:
            return raw
        raise ConfigError(
            "the trail key must be 32 bytes, or 64 hex digits",
            key="trail.key_file" if self.key_file else "trail.key_env",
            hint="make one with: python -c 'import os; print(os.urandom(32).hex())'",
        )


@dataclass(frozen=True)
class TablesConfig:
    include: tuple[str, ...] = ("*.*",)
    exclude: tuple[str, ...] = ()
    #: "schema.table" -> the columns to replicate (others are dropped at capture)
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: "schema.table" -> row predicate (SQL boolean on the row image)
    where: dict[str, str] = field(default_factory=dict)
    #: "schema.table" -> "schema.table", or "schema" -> "schema", for the target
    rename: dict[str, str] = field(default_factory=dict)

    @property
    def filter(self) -> TableFilter:
        return TableFilter(self.include, self.exclude)

    def target_name(self, table: TableId) -> TableId:
        """The name ``table`` gets on the target after renames (the one rule every path
        uses: ``capture.filters.rename_table``)."""
        from capture.filters import rename_table

        return rename_table(self.rename, table)


def _origins(raw: dict[str, Any], doc: Any) -> tuple[str, ...]:
    value = raw.get("ignore_origins", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise doc.error("must be a list of origin ids", "apply", "ignore_origins")
    return tuple(value)


@dataclass(frozen=True)
class ApplyConfig:
    batch_rows: int = 20_000
    batch_ms: int = 500
    on_error: str = "stop"  # stop | skip
    reject_file: Path | None = None
    collision: bool = False
    parallel: int = 1
    skip_ddl: bool = False
    #: N:1 topologies: add this column holding the source id to every target table
    source_column: str | None = None
    #: loop guard of a bidirectional/cascading topology: origins not applied (default none)
    ignore_origins: tuple[str, ...] = ()
    #: delayed replica: seconds a transaction's source commit time must be older than before
    #: it is applied (0: none)
    delay: float = 0.0


@dataclass(frozen=True)
class SnapshotConfig:
    workers: int = 2
    chunk_rows: int = 50_000


@dataclass(frozen=True)
class VerifyConfig:
    chunk_rows: int = 10_000
    workers: int = 2
    max_diffs: int = 1_000
    recheck_wait: float = 5.0


@dataclass(frozen=True)
class ShipConfig:
    """[ship]: where the source host sends its trail (docs/ship.md)."""

    to: tuple[str, ...] = ()
    name: str | None = None
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    token_file: Path | None = None
    token_env: str | None = None
    retry_for: float | None = None


@dataclass(frozen=True)
class ReceiveConfig:
    """[receive]: where the target host listens for shipped trails (docs/ship.md)."""

    listen: str = "127.0.0.1:7433"
    dir: Path | None = None
    sources: tuple[str, ...] = ()
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    token_file: Path | None = None
    token_env: str | None = None
    #: --until-caught-up: seconds to wait with no sender connected before exit 75; None:
    #: the default (RETRY_FOR_CAUGHT_UP)
    retry_for: float | None = None


@dataclass(frozen=True)
class Config:
    """Everything a command may need; build it with :func:`load`."""

    sources: dict[str, SourceConfig] = field(default_factory=dict)
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    trail: TrailConfig = field(default_factory=TrailConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    apply: ApplyConfig = field(default_factory=ApplyConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    ship: ShipConfig = field(default_factory=ShipConfig)
    receive: ReceiveConfig = field(default_factory=ReceiveConfig)
    state_dir: Path = Path(".redoline")
    path: Path | None = None

    def source(self, name: str | None = None) -> SourceConfig:
        return _pick(self.sources, name, "source", "--source URL or a [source] section")

    def target(self, name: str | None = None) -> TargetConfig:
        return _pick(self.targets, name, "target", "--target URL or a [target] section")


def _pick(items: dict[str, Any], name: str | None, what: str, how: str) -> Any:
    if name is not None:
        if name not in items:
            known = ", ".join(sorted(items)) or "none"
            raise ConfigError(f"no {what} named {name!r} (configured: {known})")
        return items[name]
    if not items:
        raise ConfigError(f"no {what} is configured", hint=f"give {how}")
    if len(items) > 1:
        raise ConfigError(
            f"several {what}s are configured ({', '.join(sorted(items))}); choose one",
            hint=f"--{what}-name NAME",
        )
    return next(iter(items.values()))


# --------------------------------------------------------------------------- loading


class _Doc:
    """The parsed TOML plus enough of its text to point at lines."""

    def __init__(self, path: Path | None, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, section: str, key: str | None = None) -> int | None:
        header = re.compile(
            r"^\s*\[\s*" + re.escape(section).replace(r"\.", r"\s*\.\s*") + r"\s*\]"
        )
        start = None
        for i, line in enumerate(self.lines):
            if header.match(line):
                start = i
                if key is None:
                    return i + 1
                continue
            if start is not None:
                if re.match(r"^\s*\[", line):
                    start = None
                    continue
                bare = (key or "").split(".")[-1]
                if re.match(r'^\s*"?' + re.escape(bare) + r'"?\s*=', line):
                    return i + 1
        return None

    def error(self, message: str, section: str, key: str | None = None, **kw: Any) -> ConfigError:
        full_key = f"{section}.{key}" if key else section
        return ConfigError(
            message,
            file=str(self.path) if self.path else None,
            line=self.line_of(section, key) if self.path else None,
            key=full_key,
            **kw,
        )


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, doc: _Doc, section: str, key: str) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise doc.error(
                f"the environment variable {name} is not set",
                section,
                key,
                hint=f"export {name}=... (or write ${{{name}:-default}})",
            )

        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [_interpolate(v, doc, section, key) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, doc, section, f"{key}.{k}") for k, v in value.items()}
    return value


def load(
    path: Path | str | None = None,
    *,
    source: str | None = None,
    target: str | None = None,
    trail: str | Path | None = None,
    source_password: str | None = None,
    target_password: str | None = None,
    slot: str | None = None,
    publication: str | None = None,
    source_options: dict[str, Any] | None = None,
) -> Config:
    """Load the configuration: ``path`` (or ``$REDOLINE_CONFIG``, or ``./redoline.toml`` if it
    exists), then environment overrides, then these arguments (the command-line flags).

    ``source_options`` (and ``slot``/``publication``) override engine-specific ``[source]``
    keys; an engine checks its own."""
    file, raw, doc = _read_file(path)
    _check_sections(raw, doc)
    sources = _endpoints(raw, doc, "source", SourceConfig)
    targets = _endpoints(raw, doc, "target", TargetConfig)

    # environment, then flags, override the single/default source and target
    src_url = source or os.environ.get(ENV_SOURCE_URL)
    src_pw = source_password or os.environ.get(ENV_SOURCE_PASSWORD)
    if src_url or src_pw:
        sources = _override(sources, src_url, src_pw, "source", SourceConfig)
    flags = {"slot": slot, "publication": publication, **(source_options or {})}
    flags = {k: v for k, v in flags.items() if v is not None}
    if flags:
        sources = {n: _with_settings(src, flags) for n, src in sources.items()}
    tgt_url = target or os.environ.get(ENV_TARGET_URL)
    tgt_pw = target_password or os.environ.get(ENV_TARGET_PASSWORD)
    if tgt_url or tgt_pw:
        targets = _override(targets, tgt_url, tgt_pw, "target", TargetConfig)

    trail_raw = _section(raw, doc, "trail")
    trail_dir = trail or os.environ.get(ENV_TRAIL_DIR) or trail_raw.get("dir") or "trail"
    trail_cfg = TrailConfig(
        dir=Path(str(trail_dir)),
        segment_mb=_num(trail_raw, doc, "trail", "segment_mb", 10.0),
        key_file=Path(trail_raw["key_file"]) if trail_raw.get("key_file") else None,
        key_env=trail_raw.get("key_env"),
        keep_days=_opt_num(trail_raw, doc, "trail", "keep_days"),
        keep_bytes=_opt_int(trail_raw, doc, "trail", "keep_bytes"),
        keep_segments=_opt_int(trail_raw, doc, "trail", "keep_segments"),
    )
    tables = _tables(_section(raw, doc, "tables"), doc)
    apply_cfg = _apply(_section(raw, doc, "apply"), doc)
    snap_raw = _section(raw, doc, "snapshot")
    verify_raw = _section(raw, doc, "verify")
    state_raw = _section(raw, doc, "state")
    ship_cfg, receive_cfg = _ship(_section(raw, doc, "ship"), _section(raw, doc, "receive"), doc)
    return Config(
        sources=sources,
        targets=targets,
        trail=trail_cfg,
        tables=tables,
        apply=apply_cfg,
        snapshot=SnapshotConfig(
            workers=_int(snap_raw, doc, "snapshot", "workers", SnapshotConfig.workers, minimum=1),
            chunk_rows=_int(
                snap_raw, doc, "snapshot", "chunk_rows", SnapshotConfig.chunk_rows, minimum=1
            ),
        ),
        verify=VerifyConfig(
            chunk_rows=_int(
                verify_raw, doc, "verify", "chunk_rows", VerifyConfig.chunk_rows, minimum=1
            ),
            workers=_int(verify_raw, doc, "verify", "workers", VerifyConfig.workers, minimum=1),
            max_diffs=_int(
                verify_raw, doc, "verify", "max_diffs", VerifyConfig.max_diffs, minimum=1
            ),
            recheck_wait=_num(verify_raw, doc, "verify", "recheck_wait", VerifyConfig.recheck_wait),
        ),
        ship=ship_cfg,
        receive=receive_cfg,
        state_dir=Path(str(state_raw.get("dir", ".redoline"))),
        path=file if file.exists() else None,
    )


def _read_file(path: Path | str | None) -> tuple[Path, dict[str, Any], _Doc]:
    """The configuration file (``path``, ``$REDOLINE_CONFIG`` or ``./redoline.toml``) parsed;
    an empty configuration when none exists and none was named."""
    explicit = path is not None or ENV_CONFIG in os.environ
    file = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_FILE)
    raw: dict[str, Any] = {}
    doc = _Doc(None, "")
    if file.exists():
        text = file.read_text(encoding="utf-8")
        doc = _Doc(file, text)
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = re.search(r"line (\d+)", str(exc))
            raise ConfigError(
                f"not valid TOML: {exc}",
                file=str(file),
                line=int(line.group(1)) if line else None,
            ) from None
    elif explicit:
        raise ConfigError(f"the configuration file {file} does not exist")

    return file, raw, doc


def _apply(apply_raw: dict[str, Any], doc: _Doc) -> ApplyConfig:
    on_error = str(apply_raw.get("on_error", "stop"))
    if on_error not in ("stop", "skip"):
        raise doc.error(f"on_error must be 'stop' or 'skip', not {on_error!r}", "apply", "on_error")
    return ApplyConfig(
        batch_rows=_int(apply_raw, doc, "apply", "batch_rows", ApplyConfig.batch_rows, minimum=1),
        batch_ms=_int(apply_raw, doc, "apply", "batch_ms", ApplyConfig.batch_ms),
        on_error=on_error,
        reject_file=Path(apply_raw["reject_file"]) if apply_raw.get("reject_file") else None,
        collision=_bool(apply_raw, doc, "apply", "collision", False),
        parallel=_int(apply_raw, doc, "apply", "parallel", 1, minimum=1),
        skip_ddl=_bool(apply_raw, doc, "apply", "skip_ddl", False),
        source_column=apply_raw.get("source_column"),
        ignore_origins=_origins(apply_raw, doc),
        delay=_duration(apply_raw, doc, "apply", "delay"),
    )


def _check_sections(raw: dict[str, Any], doc: _Doc) -> None:
    allowed = set(_KEYS) | {"sources", "targets"}
    for name, value in raw.items():
        if name not in allowed:
            raise doc.error(
                f"unknown section [{name}]",
                name,
                hint="known sections: " + ", ".join(sorted(allowed)),
            )
        if not isinstance(value, dict):
            raise doc.error(f"{name} must be a [section], not a value", name)


def _section(raw: dict[str, Any], doc: _Doc, name: str) -> dict[str, Any]:
    section = raw.get(name, {})
    for key in section:
        if key not in _keys(name):
            raise doc.error(
                f"unknown key {key!r}",
                name,
                key,
                hint=f"keys of [{name}]: " + ", ".join(sorted(_keys(name))),
            )
    return {k: _interpolate(v, doc, name, k) for k, v in section.items()}


def _endpoints(raw: dict[str, Any], doc: _Doc, kind: str, cls: type[Any]) -> dict[str, Any]:
    plural = kind + "s"
    entries: dict[str, tuple[str, dict[str, Any]]] = {}
    if kind in raw:
        entries["default"] = (kind, _section(raw, doc, kind))
    for name, body in raw.get(plural, {}).items():
        label = f"{plural}.{name}"
        if not isinstance(body, dict):
            raise doc.error(f"[{label}] must be a section", label)
        for key in body:
            if key not in _keys(kind):
                raise doc.error(f"unknown key {key!r}", label, key)
        entries[name] = (label, {k: _interpolate(v, doc, label, k) for k, v in body.items()})
    out = {}
    for name, (label, body) in entries.items():
        if "url" not in body:
            raise doc.error("missing the url key", label, hint=f'[{label}] url = "..."')
        endpoint = Endpoint.parse(
            str(body["url"]),
            password=str(body["password"]) if "password" in body else None,
            key=f"{label}.url",
        )
        kwargs: dict[str, Any] = {
            "name": name,
            "endpoint": endpoint,
            "id": str(body.get("id", name)),
        }
        if kind == "source":
            engine_keys = _source_keys()
            kwargs["settings"] = tuple((k, v) for k, v in body.items() if k in engine_keys)
        if "retry_for" in body:
            try:
                kwargs["retry_for"] = parse_duration(body["retry_for"])
            except ValueError as exc:
                raise doc.error(str(exc), label, "retry_for") from None
        if kind == "source" and "heartbeat" in body:
            try:
                beat = parse_duration(body["heartbeat"])
            except ValueError as exc:
                raise doc.error(str(exc), label, "heartbeat") from None
            if 0 < beat < 0.05:
                raise doc.error("must be at least 50ms (or 0 for no heartbeat)", label, "heartbeat")
            kwargs["heartbeat"] = beat
        out[name] = cls(**kwargs)
        if kind == "source":
            try:
                out[name].options  # noqa: B018 (the engine checks its keys now)
            except ValueError as exc:
                raise doc.error(exc.args[1], label, exc.args[0]) from None
    return out


def _keys(section: str) -> set[str]:
    """The keys ``[section]`` takes (a source's include every engine's own)."""
    return _KEYS[section] | _source_keys() if section == "source" else _KEYS[section]


def _source_keys() -> set[str]:
    """Every engine's own ``[source]`` keys."""
    return set(source_option_keys())


def _with_settings(src: SourceConfig, flags: dict[str, Any]) -> SourceConfig:
    """``src`` with command-line values for engine keys, checked by its engine."""
    merged = {**dict(src.settings), **flags}
    out = replace(src, settings=tuple(merged.items()))
    try:
        out.options  # noqa: B018
    except ValueError as exc:
        raise ConfigError(f"--{exc.args[0].replace('_', '-')}: {exc.args[1]}") from None
    return out


def _override(
    items: dict[str, Any], url: str | None, password: str | None, kind: str, cls: type[Any]
) -> dict[str, Any]:
    if url:
        endpoint = Endpoint.parse(url, password=password, key=f"--{kind}")
        if len(items) <= 1:
            old = next(iter(items.values()), None)
            if old is not None:
                # the URL is replaced; the section's other keys (slot, server_id...) stay
                return {old.name: replace(old, endpoint=endpoint)}
            return {"default": cls(name="default", endpoint=endpoint, id="default")}
        return {**items, "cli": cls(name="cli", endpoint=endpoint, id="cli")}
    if password and len(items) == 1:
        ((name, old),) = items.items()
        return {name: _replace_endpoint(old, old.endpoint.with_password(password))}
    return items


def _replace_endpoint(item: Any, endpoint: Endpoint) -> Any:
    return replace(item, endpoint=endpoint)


def _ship(
    ship: dict[str, Any], receive: dict[str, Any], doc: _Doc
) -> tuple[ShipConfig, ReceiveConfig]:
    def strs(raw: dict[str, Any], section: str, key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise doc.error("must be a string or a list of strings", section, key)
        return tuple(value)

    def path(raw: dict[str, Any], section: str, key: str) -> Path | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise doc.error("must be a file path", section, key)
        return Path(value)

    def text(raw: dict[str, Any], section: str, key: str) -> str | None:
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise doc.error("must be a non-empty string", section, key)
        return value

    def duration(raw: dict[str, Any], section: str) -> float | None:
        if "retry_for" not in raw:
            return None
        try:
            return parse_duration(raw["retry_for"])
        except ValueError as exc:
            raise doc.error(str(exc), section, "retry_for") from None

    ship_cfg = ShipConfig(
        to=strs(ship, "ship", "to"),
        name=text(ship, "ship", "name"),
        cert=path(ship, "ship", "cert"),
        key=path(ship, "ship", "key"),
        ca=path(ship, "ship", "ca"),
        token_file=path(ship, "ship", "token_file"),
        token_env=text(ship, "ship", "token_env"),
        retry_for=duration(ship, "ship"),
    )
    receive_cfg = ReceiveConfig(
        listen=text(receive, "receive", "listen") or ReceiveConfig.listen,
        dir=path(receive, "receive", "dir"),
        sources=strs(receive, "receive", "sources"),
        cert=path(receive, "receive", "cert"),
        key=path(receive, "receive", "key"),
        ca=path(receive, "receive", "ca"),
        token_file=path(receive, "receive", "token_file"),
        token_env=text(receive, "receive", "token_env"),
        retry_for=duration(receive, "receive"),
    )
    return ship_cfg, receive_cfg


def _tables(raw: dict[str, Any], doc: _Doc) -> TablesConfig:
    def str_list(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = raw.get(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise doc.error('must be a list of "schema.table" patterns', "tables", key)
        for pattern in value:
            if "." not in pattern:
                raise doc.error(
                    f"{pattern!r} is not of the form schema.table (globs allowed)",
                    "tables",
                    key,
                )
        return tuple(value)

    def str_map(key: str) -> dict[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise doc.error('must be a table of "schema.table" = value', "tables", key)
        return value

    columns = {}
    for table, cols in str_map("columns").items():
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise doc.error("must be a list of column names", "tables.columns", table)
        columns[table] = tuple(cols)
    where = {}
    for table, predicate in str_map("where").items():
        if not isinstance(predicate, str):
            raise doc.error("must be a SQL boolean expression", "tables.where", table)
        where[table] = predicate
    rename = {}
    for old, new in str_map("rename").items():
        if not isinstance(new, str) or ("." in old) != ("." in new):
            raise doc.error(
                "rename a table to schema.table, or a schema to a schema", "tables.rename", old
            )
        rename[old] = new
    return TablesConfig(
        include=str_list("include", ("*.*",)),
        exclude=str_list("exclude", ()),
        columns=columns,
        where=where,
        rename=rename,
    )


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a string such as ``"90s"``, ``"5m"``, ``"1h"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(value))
        if match is None:
            raise ValueError(f'must be a duration such as 30, "90s", "5m" or "1h", not {value!r}')
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def _duration(raw: dict[str, Any], doc: _Doc, section: str, key: str) -> float:
    if key not in raw:
        return 0.0
    try:
        return parse_duration(raw[key])
    except ValueError as exc:
        raise doc.error(str(exc), section, key) from None


def _num(raw: dict[str, Any], doc: _Doc, section: str, key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise doc.error(f"must be a number, not {value!r}", section, key)
    if value < 0:
        raise doc.error("must not be negative", section, key)
    return float(value)


def _int(
    raw: dict[str, Any], doc: _Doc, section: str, key: str, default: int, minimum: int = 0
) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise doc.error(f"must be a whole number, not {value!r}", section, key)
    if value < minimum:
        raise doc.error(
            "must not be negative" if minimum == 0 else f"must be at least {minimum}",
            section,
            key,
        )
    return value


def _opt_num(raw: dict[str, Any], doc: _Doc, section: str, key: str) -> float | None:
    return _num(raw, doc, section, key, 0) if key in raw else None


def _opt_int(raw: dict[str, Any], doc: _Doc, section: str, key: str) -> int | None:
    return _int(raw, doc, section, key, 0) if key in raw else None


def _bool(raw: dict[str, Any], doc: _Doc, section: str, key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise doc.error(f"must be true or false, not {value!r}", section, key)
    return value
