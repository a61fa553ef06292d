"""CloudWatch Logs on the twin: log groups, their streams and events, durable in the work directory.

Every event is one JSON line ``[timestamp_ms, ingestion_ms, message]`` appended to
``<root>/<group>/<stream>.jsonl`` (names percent-encoded), so a restart, even after
``kill -9``, keeps everything that was written; a torn last line is skipped when read.
Groups declared by the assembly (``AWS::Logs::LogGroup``) exist from the start; any
other group (``/aws/lambda/<name>`` when a function names none) appears with its first
event, as CloudWatch creates it on the function's first write.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from mlops.twin.assembly import Assembly

GROUPS_FILE = "groups.json"
MAX_OPEN_STREAMS = 128  # stream files kept open for appending (Lambda workers write line by line)


@dataclass(frozen=True)
class LogEvent:
    timestamp: int  # ms since the epoch
    ingestion_time: int
    message: str
    index: int  # position in its stream


@dataclass
class GroupInfo:
    name: str
    creation_time: int
    retention_days: int | None = None
    kms_key_id: str | None = None
    declared: bool = False  # a resource of the assembly (else created by the first write)


@dataclass
class _Stream:
    path: Path
    events: list[LogEvent] | None = None  # loaded on first read, then kept current
    creation_time: int = 0


@dataclass
class _Group:
    info: GroupInfo
    streams: dict[str, _Stream] = field(default_factory=dict)


def _encode(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class LogStore:
    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.RLock()
        self._groups: dict[str, _Group] = {}
        self._open: dict[Path, TextIO] = {}  # in least recently written order
        self._created = self._load_created()
        for group_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            name = urllib.parse.unquote(group_dir.name)
            group = self._group(name)
            for path in sorted(group_dir.glob("*.jsonl")):
                group.streams[urllib.parse.unquote(path.stem)] = _Stream(path, creation_time=self._ctime(path))

    # -- groups ---------------------------------------------------------------------------
    def declare_group(self, name: str, *, retention_days: int | None = None, kms_key_id: str | None = None) -> None:
        """A log group the assembly defines: listed even before anything is written to it."""
        with self._lock:
            info = self._group(name).info
            info.retention_days, info.kms_key_id, info.declared = retention_days, kms_key_id, True

    def groups(self) -> list[GroupInfo]:
        with self._lock:
            return sorted((g.info for g in self._groups.values()), key=lambda g: g.name)

    def group(self, name: str) -> GroupInfo | None:
        with self._lock:
            found = self._groups.get(name)
            return found.info if found else None

    def _group(self, name: str) -> _Group:
        found = self._groups.get(name)
        if found is None:
            created = self._created.get(name)
            if created is None:
                created = self._created[name] = int(self._clock() * 1000)
                self._save_created()
            found = self._groups[name] = _Group(GroupInfo(name, created))
        return found

    def _load_created(self) -> dict[str, int]:
        path = self.root / GROUPS_FILE
        try:
            return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _save_created(self) -> None:
        tmp = self.root / (GROUPS_FILE + ".tmp")
        tmp.write_text(json.dumps(self._created, indent=1, sort_keys=True))
        tmp.replace(self.root / GROUPS_FILE)

    # -- writing --------------------------------------------------------------------------
    def append(self, group: str, stream: str, message: str, timestamp_ms: int | None = None) -> None:
        now = int(self._clock() * 1000)
        ts = now if timestamp_ms is None else int(timestamp_ms)
        line = json.dumps([ts, now, message], ensure_ascii=False) + "\n"
        with self._lock:
            entry = self._group(group).streams.get(stream)
            if entry is None:
                folder = self.root / _encode(group)
                folder.mkdir(exist_ok=True)
                entry = _Stream(folder / f"{_encode(stream)}.jsonl", creation_time=now)
                self._group(group).streams[stream] = entry
            handle = self._open.pop(entry.path, None) or entry.path.open("a", encoding="utf-8")
            self._open[entry.path] = handle
            handle.write(line)
            handle.flush()  # into the OS as a whole line: a crash of the twin tears at most the last one
            if len(self._open) > MAX_OPEN_STREAMS:
                self._open.pop(next(iter(self._open))).close()
            if entry.events is not None:
                entry.events.append(LogEvent(ts, now, message, len(entry.events)))

    def close(self) -> None:
        with self._lock:
            for handle in self._open.values():
                handle.close()
            self._open.clear()

    # -- reading --------------------------------------------------------------------------
    def streams(self, group: str) -> dict[str, int]:
        """Stream name -> creation time (ms) of a group."""
        with self._lock:
            found = self._groups.get(group)
            return {name: s.creation_time for name, s in found.streams.items()} if found else {}

    def events(self, group: str, stream: str) -> list[LogEvent]:
        """Every event of a stream, in the order written (a snapshot)."""
        with self._lock:
            found = self._groups.get(group)
            entry = found.streams.get(stream) if found else None
            if entry is None:
                return []
            if entry.events is None:
                entry.events = self._read(entry.path)
            return list(entry.events)

    @staticmethod
    def _read(path: Path) -> list[LogEvent]:
        events: list[LogEvent] = []
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return events
        for line in lines:
            try:
                ts, ingested, message = json.loads(line)
            except (ValueError, TypeError):
                continue  # a line torn by a crash
            events.append(LogEvent(int(ts), int(ingested), str(message), len(events)))
        return events

    def _ctime(self, path: Path) -> int:
        try:
            with path.open(encoding="utf-8") as f:
                return int(json.loads(f.readline())[1])
        except (OSError, ValueError, TypeError, IndexError):
            return int(path.stat().st_mtime * 1000)

    def install(self, assembly: Assembly) -> None:
        """Declare the assembly's ``AWS::Logs::LogGroup`` resources (name, retention, KMS key)."""
        for res in assembly.resources("AWS::Logs::LogGroup"):
            if assembly.included(res):
                props = assembly.resolve(res.properties, res.stack)
                retention = props.get("RetentionInDays")
                self.declare_group(
                    res.physical_id,
                    retention_days=int(retention) if retention is not None else None,
                    kms_key_id=str(props["KmsKeyId"]) if props.get("KmsKeyId") else None,
                )
