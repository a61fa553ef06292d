"""The twin's S3 data path: object bytes go between socket and disk, never whole in memory.

In front of moto's S3 app, for the operations that carry object data:

- **PutObject, UploadPart**: the body is written to disk as it is read (``aws-chunked``
  framing and trailing checksums decoded), with its MD5 and the requested
  ``x-amz-checksum-*`` computed on the way and verified against what the client sent
  (``BadDigest``); the file is fsynced before moto records it (parts too: their flush
  overlaps the transfer of the other parts, and completing an upload only renames files). moto then handles
  the request with an empty body and stores the file as the key's value
  (:class:`mlops.twin.moto_ext.StreamedValue`), so headers, metadata, conditions
  (``If-Match``/``If-None-Match``), versioning and events stay moto's.
- **CopyObject, UploadPartCopy**: the source's bytes (or the range asked) are copied file to
  file, in bounded memory, and handed to moto the same way (moto would load the whole source,
  for every part of a multipart copy).
- **GetObject**: moto answers the request as a HEAD (conditions, headers, ``partNumber``,
  errors); the bytes asked for (``Range``, suffix and open ranges, ``416 InvalidRange``)
  are read from the object's files.

Limits as S3's: 5 GiB for a single PUT and for a part (``EntityTooLarge``), part numbers
1 to 10,000 (moto's ``InvalidArgument``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import queue
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mlops.twin import moto_ext
from mlops.twin.s3 import checksums
from mlops.twin.s3.store import CHUNK, BucketStore, DiskBody, fsync_dir

MAX_SINGLE_UPLOAD = 5 * 1024**3  # PutObject and UploadPart
OVERRIDES = {  # GetObject's query parameters that set a response header
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
    "response-content-language": "Content-Language",
    "response-content-type": "Content-Type",
    "response-expires": "Expires",
}
READ_CHUNK = 4 * 1024 * 1024
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]
OPERATIONS = {"PutObject", "UploadPart", "CopyObject", "UploadPartCopy", "GetObject", "HeadObject"}


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def respond(self, start_response: Callable[..., Any], resource: str) -> list[bytes]:
        fields = "".join(f"<{k}>{_xml(str(v))}</{k}>" for k, v in self.extra.items())
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{_xml(self.message)}</Message>{fields}"
            f"<Resource>{_xml(resource)}</Resource><RequestId>twin</RequestId></Error>"
        ).encode()
        start_response(
            f"{self.status} {_REASONS.get(self.status, 'Error')}",
            [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
        )
        return [body]


class DataPath:
    """WSGI middleware over moto's S3 app; ``stores(bucket)`` is the bucket's store, if the twin keeps it."""

    def __init__(self, app: WsgiApp, stores: Callable[[str], BucketStore | None], backend: Callable[[], Any]) -> None:
        self.app = app
        self.stores = stores
        self.backend = backend
        self.streamed = moto_ext.StreamedValue()

    def install(self, backend: Any) -> Callable[[], None]:
        undo = [
            moto_ext.file_backed_keys(),
            self.streamed.install(backend),
            moto_ext.complete_from_files(self._assemble),
        ]
        return lambda: [u() for u in reversed(undo)] and None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        operation = environ.get("mlops.twin.operation")
        bucket = (environ.get("mlops.twin.labels") or {}).get("Bucket", "")
        store = self.stores(bucket) if operation in OPERATIONS else None
        if store is None:
            return self.app(environ, start_response)
        if operation == "HeadObject":
            return self._head(environ, start_response)
        try:
            if operation == "GetObject":
                return self._get(environ, start_response)
            if operation in ("CopyObject", "UploadPartCopy"):
                return self._copy(environ, start_response, store, part=operation == "UploadPartCopy")
            return self._put(environ, start_response, store, part=operation == "UploadPart")
        except S3Error as exc:
            return exc.respond(start_response, environ.get("PATH_INFO", "/"))

    # -- uploads -----------------------------------------------------------------------
    def _put(
        self, environ: dict[str, Any], start_response: Callable[..., Any], store: BucketStore, *, part: bool
    ) -> Any:
        if part and not _valid_part_number(environ):
            return self.app(_without_body(environ), start_response)  # moto's InvalidArgument
        declared = _declared_size(environ)
        if declared is not None and declared > MAX_SINGLE_UPLOAD:
            raise S3Error(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                ProposedSize=declared,
                MaxSizeAllowed=MAX_SINGLE_UPLOAD,
            )
        path = store.new_upload_path() if part else store.new_data_path()
        body, sent, md5_b64 = _receive(environ, path, name_durably=not part)
        body.owned = True  # until moto holds it
        try:
            _verify(body, sent, md5_b64, _header(environ, "Content-MD5"))
        except S3Error:
            body.reader().close()
            raise
        forwarded = _without_body(environ)
        for algorithm, value in body.checksums.items():  # moto records and echoes the verified value
            forwarded[_env_name(f"x-amz-checksum-{algorithm.lower()}")] = value
            forwarded["HTTP_X_AMZ_SDK_CHECKSUM_ALGORITHM"] = algorithm
        try:
            self.streamed.offer(body)
            result = self.app(forwarded, start_response)
        finally:
            left = self.streamed.withdraw()
            if left is not None:  # moto refused the request (a condition, a missing upload): no object
                left.reader().close()
        if not part:
            body.owned = False  # the store's now: removed when no version names it
        return result

    def _copy(
        self, environ: dict[str, Any], start_response: Callable[..., Any], store: BucketStore, *, part: bool
    ) -> Any:
        """CopyObject and UploadPartCopy from a file-backed source: the bytes copied file to file."""
        if part and not _valid_part_number(environ):
            return self.app(environ, start_response)  # moto's InvalidArgument
        source = self._copy_source(environ)
        body = moto_ext.body_of(source) if source is not None else None
        if body is None:  # no such source (moto's error), or one moto holds
            return self.app(environ, start_response)
        first, last = 0, body.size - 1
        span = _copy_range(_header(environ, "x-amz-copy-source-range"), body.size) if part else None
        if span is not None:
            first, last = span
        if last - first + 1 > MAX_SINGLE_UPLOAD:
            raise S3Error(
                400,
                "InvalidRequest",
                "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120",
            )
        path = store.new_upload_path() if part else store.new_data_path()
        copied = _write(path, body.read(first, last) if last >= first else iter(()), {}, name_durably=not part)[0]
        copied.owned = True
        try:
            self.streamed.offer(copied)
            result = self.app(environ, start_response)
        finally:
            left = self.streamed.withdraw()
            if left is not None:  # moto refused (a condition on the source, a missing upload)
                left.reader().close()
        if not part:
            copied.owned = False
        return result

    def _copy_source(self, environ: dict[str, Any]) -> Any:
        raw = _header(environ, "x-amz-copy-source") or ""
        parsed = urllib.parse.urlparse(raw)
        bucket, _, key = urllib.parse.unquote(parsed.path).lstrip("/").partition("/")
        version = urllib.parse.parse_qs(parsed.query).get("versionId", [None])[0]
        try:
            return self.backend().get_object(bucket, key, version_id=version)
        except Exception:  # moto answers with its error
            return None

    def _assemble(
        self, parts: list[DiskBody], algorithm: str | None, checksum_type: str | None
    ) -> tuple[DiskBody, tuple[str, str, int] | None]:
        details = _multipart_checksum(parts, algorithm, checksum_type)
        data = parts[0].files[0][0].parent.parent / "data"
        data.mkdir(parents=True, exist_ok=True)
        moved: list[tuple[Path, int]] = []
        for part in parts:
            files = []
            for path, size in part.files:
                target = data / path.name
                with path.open("rb") as f:
                    os.fsync(f.fileno())
                path.replace(target)
                files.append((target, size))
            part.adopt(files)
            moved.extend(files)
        fsync_dir(data)
        return DiskBody(moved), details

    # -- downloads ---------------------------------------------------------------------
    def _moto_head(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], Any]:
        """moto's answer to the request as a HEAD without Range, and the key it is about (None if none)."""
        query = _query(environ)
        head = dict(environ, REQUEST_METHOD="HEAD")
        head.pop("HTTP_RANGE", None)
        if "partNumber" in query:  # moto would load the whole object to cut a part out of it
            head["QUERY_STRING"] = urllib.parse.urlencode({k: v for k, v in query.items() if k != "partNumber"})
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured.update(status=status, headers=headers)
            return lambda _data: None

        for _ in self.app(head, capture):
            pass
        status = int(captured["status"].split()[0])
        key = self._key(environ) if status in (200, 206) else None
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        if key is None:
            return status, headers, None
        if "partNumber" in query:
            span = _part_range(key, query["partNumber"])
            if span is None:  # not a part of this object: moto's error
                return 400, headers, None
            status = 206
            headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum-")]
            headers += [("Content-Range", f"bytes {span[0]}-{span[1]}/{key.size}"), ("x-amz-mp-parts-count", span[2])]
            return status, headers, key
        return status, _checksum_headers(headers, key, _header(environ, "x-amz-checksum-mode") == "ENABLED"), key

    def _head(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        status, headers, key = self._moto_head(environ)
        if key is None or _header(environ, "Range"):  # moto answers ranges of HEAD without reading data
            return self.app(environ, start_response)
        size = next((v for k, v in headers if k.lower() == "content-range"), None)
        length = _content_range(headers)[1] - _content_range(headers)[0] + 1 if size else key.size
        start_response(f"{status} {_REASONS.get(status, 'OK')}", [*headers, ("Content-Length", str(length))])
        return [b""]

    def _get(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        status, headers, key = self._moto_head(environ)
        body = moto_ext.body_of(key) if key is not None else None
        if body is None:  # errors, 304, and values moto holds: moto answers the GET itself
            return self.app(environ, start_response)
        query = _query(environ)
        for param, header in OVERRIDES.items():  # response-content-type=... and the like
            if param in query:
                headers = [(k, v) for k, v in headers if k.lower() != header.lower()] + [(header, query[param])]
        if status == 206:  # partNumber: moto told the part's bytes
            first, last = _content_range(headers)
        else:
            span = _range(_header(environ, "Range"), body.size)
            if span is None:
                first, last = 0, body.size - 1
            else:
                first, last = span
                status = 206
                headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum-")]
                headers.append(("Content-Range", f"bytes {first}-{last}/{body.size}"))
        length = max(0, last - first + 1)
        headers.append(("Content-Length", str(length)))
        start_response(f"{status} {_REASONS.get(status, 'OK')}", headers)
        return body.read(first, last, READ_CHUNK) if length else [b""]

    def _key(self, environ: dict[str, Any]) -> Any:
        labels = environ.get("mlops.twin.labels") or {}
        query = _query(environ)
        try:
            return self.backend().get_object(
                labels.get("Bucket", ""), labels.get("Key", ""), version_id=query.get("versionId")
            )
        except Exception:  # gone between the HEAD and now: moto answers
            return None


# -- request bodies ----------------------------------------------------------------------------
def _receive(environ: dict[str, Any], path: Path, *, name_durably: bool) -> tuple[DiskBody, dict[str, str], str]:
    """Write the request body to ``path``; returns it (ETag, checksums), the checksums sent, its base64 MD5."""
    wanted = _wanted_algorithm(environ)
    sent = {a: _header(environ, f"x-amz-checksum-{a.lower()}") for a in checksums.ALGORITHMS}
    sent = {a: v for a, v in sent.items() if v}
    stream = environ["wsgi.input"]
    chunked = "aws-chunked" in (_header(environ, "Content-Encoding") or "") or (
        _header(environ, "x-amz-content-sha256") or ""
    ).startswith("STREAMING-")
    pieces = _aws_chunks(stream, sent) if chunked else _plain(stream, _length(environ))
    digests = {a: checksums.new(a) for a in ([wanted] if wanted else [])}
    body, md5_b64 = _write(path, pieces, digests, name_durably=name_durably)
    return body, sent, md5_b64


def _write(
    path: Path, pieces: Iterable[bytes], digests: dict[str, checksums.Checksum], *, name_durably: bool
) -> tuple[DiskBody, str]:
    """``pieces`` into a new file at ``path``, fsynced; the body (MD5 ETag, checksums) and its base64 MD5.

    The data is always fsynced before the answer (a part's flush then overlaps the transfer of
    the others); the file's name only when it is an object's (a part is renamed into ``data/``,
    whose directory is fsynced then, and uploads in progress do not outlive the twin).

    A writer thread puts the pieces on disk while this one reads and hashes the next ones
    (both release the GIL): a write that the kernel throttles to the disk's speed then costs
    no more than the hashing, and at most ``QUEUED`` pieces wait in memory.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    writer = _Writer(fd)
    try:
        for piece in pieces:
            if size + len(piece) > MAX_SINGLE_UPLOAD:
                raise S3Error(
                    400,
                    "EntityTooLarge",
                    "Your proposed upload exceeds the maximum allowed size",
                    ProposedSize=size + len(piece),
                    MaxSizeAllowed=MAX_SINGLE_UPLOAD,
                )
            writer.put(piece)
            md5.update(piece)
            for digest in digests.values():
                digest.update(piece)
            size += len(piece)
        writer.finish()
        os.fsync(fd)
    except BaseException:
        writer.finish(failed=True)
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    if name_durably:
        fsync_dir(path.parent)
    body = DiskBody([(path, size)], md5.hexdigest())
    body.checksums = {a: checksums.b64(d.digest()) for a, d in digests.items()}
    return body, base64.b64encode(md5.digest()).decode()


class _Writer:
    QUEUED = 4

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUED)
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._drain, daemon=True, name="s3-writer")
        self.thread.start()

    def put(self, piece: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(piece)

    def _drain(self) -> None:
        while (piece := self.queue.get()) is not None:
            if self.error is not None:
                continue
            view = memoryview(piece)
            try:
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError as exc:
                self.error = exc

    def finish(self, *, failed: bool = False) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and not failed:
            raise self.error


def _plain(stream: Any, length: int | None) -> Iterator[bytes]:
    left = length
    while left is None or left > 0:
        data = stream.read(CHUNK if left is None else min(CHUNK, left))
        if not data:
            if left:
                raise S3Error(
                    400,
                    "IncompleteBody",
                    "You did not provide the number of bytes specified by the Content-Length HTTP header",
                )
            return
        if left is not None:
            left -= len(data)
        yield data


def _aws_chunks(stream: Any, trailers: dict[str, str]) -> Iterator[bytes]:
    """Data of an ``aws-chunked`` body; its trailing ``x-amz-checksum-*`` lines go into ``trailers``."""
    reader = io.BufferedReader(_Raw(stream), CHUNK) if not hasattr(stream, "readline") else stream
    while True:
        line = reader.readline()
        if not line:
            raise S3Error(400, "IncompleteBody", "The request body ended inside a chunk")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            break
        left = size
        while left:
            data = reader.read(min(CHUNK, left))
            if not data:
                raise S3Error(400, "IncompleteBody", "The request body ended inside a chunk")
            left -= len(data)
            yield data
        reader.readline()  # the CRLF after the chunk's data
    while True:
        line = reader.readline().strip()
        if not line:
            return
        name, _, value = line.decode().partition(":")
        name = name.strip().lower()
        if name.startswith("x-amz-checksum-"):
            trailers[name.removeprefix("x-amz-checksum-").upper()] = value.strip()


class _Raw(io.RawIOBase):
    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _verify(body: DiskBody, sent: dict[str, str], md5_b64: str, md5_header: str | None) -> None:
    if md5_header:
        expected = _b64_digest(md5_header, 16)
        if expected is None:
            raise S3Error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
        if md5_header != md5_b64:
            raise S3Error(
                400,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
                ExpectedDigest=expected.hex(),
                CalculatedDigest=md5_b64,
            )
    for algorithm, value in sent.items():
        if _b64_digest(value, len(checksums.of(algorithm, b""))) is None:
            raise S3Error(400, "InvalidRequest", f"Value for x-amz-checksum-{algorithm.lower()} header is invalid.")
        computed = body.checksums.get(algorithm)
        if computed is None:  # a checksum sent without naming its algorithm: compute it now
            digest = checksums.new(algorithm)
            for piece in body.read():
                digest.update(piece)
            computed = body.checksums[algorithm] = checksums.b64(digest.digest())
        if computed != value:
            raise S3Error(400, "BadDigest", f"The {algorithm} you specified did not match the calculated checksum.")


def _b64_digest(value: str, size: int) -> bytes | None:
    try:
        digest = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return digest if len(digest) == size else None


def _multipart_checksum(
    parts: list[DiskBody], algorithm: str | None, checksum_type: str | None
) -> tuple[str, str, int] | None:
    if not algorithm:
        return None
    algorithm = algorithm.upper()
    kind = (checksum_type or ("FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE")).upper()
    if kind == "FULL_OBJECT":
        whole = checksums.new(algorithm)
        for part in parts:
            for piece in part.read():
                whole.update(piece)
        return kind, checksums.b64(whole.digest()), 1
    combined = b""
    for part in parts:
        known = part.checksums.get(algorithm)
        if known is None:
            digest = checksums.new(algorithm)
            for piece in part.read():
                digest.update(piece)
            combined += digest.digest()
        else:
            combined += base64.b64decode(known)
    return kind, checksums.b64(checksums.of(algorithm, combined)), len(parts)


# -- small helpers -------------------------------------------------------------------------------
def _env_name(header: str) -> str:
    upper = header.upper().replace("-", "_")
    return upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper


def _header(environ: dict[str, Any], name: str) -> str | None:
    return environ.get(_env_name(name))


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))


def _length(environ: dict[str, Any]) -> int | None:
    value = environ.get("CONTENT_LENGTH")
    return int(value) if value not in (None, "") else None


def _declared_size(environ: dict[str, Any]) -> int | None:
    decoded = _header(environ, "x-amz-decoded-content-length")
    return int(decoded) if decoded else _length(environ)


def _wanted_algorithm(environ: dict[str, Any]) -> str | None:
    named = (_header(environ, "x-amz-sdk-checksum-algorithm") or "").upper()
    if named in checksums.ALGORITHMS:
        return named
    trailer = (_header(environ, "x-amz-trailer") or "").lower()
    if trailer.startswith("x-amz-checksum-"):
        return trailer.removeprefix("x-amz-checksum-").upper()
    for algorithm in checksums.ALGORITHMS:
        if _header(environ, f"x-amz-checksum-{algorithm.lower()}"):
            return algorithm
    return None


def _valid_part_number(environ: dict[str, Any]) -> bool:
    try:
        return 1 <= int(_query(environ).get("partNumber", "")) <= 10_000
    except ValueError:
        return False


def _without_body(environ: dict[str, Any]) -> dict[str, Any]:
    """The request as moto gets it: headers kept, the body (already on disk) gone."""
    out = dict(environ)
    out["wsgi.input"] = io.BytesIO(b"")
    out["CONTENT_LENGTH"] = "0"
    for name in ("Content-MD5", "x-amz-trailer", "x-amz-decoded-content-length", "Transfer-Encoding"):
        out.pop(_env_name(name), None)
    for algorithm in checksums.ALGORITHMS:
        out.pop(_env_name(f"x-amz-checksum-{algorithm.lower()}"), None)
    if (_header(out, "x-amz-content-sha256") or "").startswith("STREAMING-"):
        out[_env_name("x-amz-content-sha256")] = "UNSIGNED-PAYLOAD"
    return out


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a ``Range: bytes=...`` header, None to send the whole object (as S3 does
    for a header it cannot parse or a list of ranges); raises 416 InvalidRange when unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    spec = header.removeprefix("bytes=").strip()
    begin_s, sep, end_s = spec.partition("-")
    try:
        begin = int(begin_s) if begin_s else None
        end = int(end_s) if end_s else None
    except ValueError:
        return None
    if not sep or (begin is None and end is None):
        return None
    if (begin is None and end == 0) or (begin is not None and begin >= size):
        raise S3Error(
            416,
            "InvalidRange",
            "The requested range is not satisfiable",
            RangeRequested=header,
            ActualObjectSize=size,
        )
    if begin is None:  # suffix: the last `end` bytes
        return size - min(end or 0, size), size - 1
    last = size - 1 if end is None else min(end, size - 1)
    return (begin, last) if begin <= last else None


def _checksum_headers(headers: list[tuple[str, str]], key: Any, asked: bool) -> list[tuple[str, str]]:
    """The object's checksum as S3 returns it when asked: ``<value>-<parts>`` for a composite one,
    with its type (moto's HEAD gives the bare value)."""
    kept = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum-")]
    if not asked or not key.checksum_algorithm:
        return headers
    value = key.checksum_value
    if key.checksum_type == "COMPOSITE":
        value = f"{value}-{key.checksum_parts}"
    kept.append((f"x-amz-checksum-{key.checksum_algorithm.lower()}", value))
    if key.checksum_type:
        kept.append(("x-amz-checksum-type", key.checksum_type))
    return kept


def _copy_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``x-amz-copy-source-range: bytes=first-last`` (both required, as S3 wants), None for the whole source."""
    if not header or not header.startswith("bytes="):
        return None
    first_s, _, last_s = header.removeprefix("bytes=").partition("-")
    try:
        first, last = int(first_s), int(last_s)
    except ValueError:
        return None
    if first > last or last >= size:
        raise S3Error(400, "InvalidArgument", "Range specified is not valid for source object of size: " + str(size))
    return first, last


def _part_range(key: Any, number: str) -> tuple[int, int, str] | None:
    """(first, last, parts count) of part ``number`` of the object, None when it has no such part."""
    sizes = moto_ext.part_sizes(key)
    try:
        n = int(number)
    except ValueError:
        return None
    if not sizes:
        return (0, key.size - 1, "1") if n == 1 else None
    if not 1 <= n <= len(sizes):
        return None
    first = sum(sizes[: n - 1])
    return first, first + sizes[n - 1] - 1, str(len(sizes))


def _content_range(headers: list[tuple[str, str]]) -> tuple[int, int]:
    value = next(v for k, v in headers if k.lower() == "content-range")
    first, last = value.split()[1].split("/")[0].split("-")
    return int(first), int(last)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_REASONS = {200: "OK", 206: "Partial Content", 400: "Bad Request", 416: "Requested Range Not Satisfiable"}
