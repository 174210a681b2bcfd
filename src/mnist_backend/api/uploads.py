"""Read a multipart/form-data body into memory under a byte cap, never onto disk.

Starlette's form parser spools large files to temporary files; an upload must never
touch the disk here, so the body is streamed through python-multipart's parser and
only the parts under the expected field name are kept, as bytes. A small, plainly
formed body is split in one pass instead, with the same checks on its parts.
Decoding the images is left to ``preprocessing.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import (
    MultipartParser,
    MultipartState,
    parse_options_header,
)
from starlette.requests import Request

from mnist_backend.errors import (
    EmptyUploadError,
    MissingFileError,
    NotMultipartError,
    TooManyFilesError,
    UploadTooLargeError,
)

# A filename is only echoed back to the client, never used as a path; this bounds
# how much of it is echoed.
MAX_FILENAME_CHARS = 255
# Field names are only listed in error messages; a few are enough to spot a typo.
_MAX_LISTED_FIELDS = 5

# Bodies up to this size (a digit drawn or photographed at a sensible size) are
# held whole and split in one pass, which costs a fraction of the incremental
# parser's per-byte state machine; larger ones stream through that parser.
WHOLE_BODY_MAX_BYTES = 64 * 1024
# A plain part has a few short headers; anything beyond these goes to the parser.
_MAX_SIMPLE_HEADERS = 8
_MAX_SIMPLE_HEADER_BYTES = 4096
# The characters of an HTTP token (RFC 9110), which a header name consists of.
_TOKEN_BYTES = (
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
# A header value of the plain form clients send ("multipart/form-data;
# boundary=x", 'form-data; name="file"; filename="7.png"'): token parameters whose
# values are bare or quoted without escapes, semicolons or line breaks.
_PLAIN_PARAMETER = r"""[!#$%&'+.^_`|~0-9A-Za-z-]+=(?:"[^"\\;\r\n]*"|[^"\\;\s]*)"""
_PLAIN_OPTIONS_HEADER = re.compile(
    rf"[ \t]*([^;\"\\\s]+)[ \t]*((?:;[ \t]*{_PLAIN_PARAMETER}[ \t]*)*)"
)
_PLAIN_OPTION = re.compile(r"""([^=; \t]+)=(?:"([^"]*)"|([^";\s]*))""")


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart body: its bytes and what the client called it."""

    data: bytes
    filename: str | None
    content_type: str | None


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    chunks: list[bytes] = field(default_factory=list)


class _PartCollector:
    """Parser callbacks that keep the parts named ``field_name`` and drop the rest."""

    def __init__(self, field_name: str, max_files: int) -> None:
        self.field_name = field_name
        self.max_files = max_files
        self.files: list[UploadedFile] = []
        self.other_fields: list[str] = []
        self._part = _Part()
        self._headers: dict[bytes, bytes] = {}
        self._header_field = bytearray()
        self._header_value = bytearray()

    def add_parts(self, parts: list[tuple[dict[bytes, bytes], bytes]]) -> None:
        """Take parts split from a whole body, through the same checks as streaming."""
        for headers, data in parts:
            self.on_part_begin()
            self._headers = headers
            self.on_headers_finished()
            self._part.chunks.append(data)
            self.on_part_end()

    def on_part_begin(self) -> None:
        self._part = _Part()
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        self._part.name = name.decode("utf-8", "replace") if name is not None else None
        filename = options.get(b"filename")
        if filename is not None:
            decoded = filename.decode("utf-8", "replace")
            self._part.filename = decoded[:MAX_FILENAME_CHARS]
        content_type = self._headers.get(b"content-type")
        if content_type is not None:
            self._part.content_type = content_type.decode("latin-1").strip()

        if self._part.name == self.field_name and len(self.files) >= self.max_files:
            raise TooManyFilesError(
                f"A request may carry at most {self.max_files} files "
                f"in field '{self.field_name}'."
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part.name == self.field_name:
            self._part.chunks.append(data[start:end])

    def on_part_end(self) -> None:
        part = self._part
        if part.name != self.field_name:
            if len(self.other_fields) < _MAX_LISTED_FIELDS:
                self.other_fields.append(part.name or "")
            return
        # One join per file: the chunks are freed as soon as the file is assembled.
        data = b"".join(part.chunks)
        part.chunks.clear()
        self.files.append(UploadedFile(data, part.filename, part.content_type))


async def read_upload_files(
    request: Request, *, field_name: str, max_bytes: int, max_files: int
) -> list[UploadedFile]:
    """Return the files sent under ``field_name``, in the order they arrived.

    Raises NotMultipartError for a body that is not multipart/form-data,
    UploadTooLargeError as soon as the body passes ``max_bytes`` (before reading it
    when Content-Length already says so), TooManyFilesError past ``max_files``,
    EmptyUploadError for an empty body and MissingFileError when no part has the
    field name. Files may be empty; callers decide whether that is an error.
    """
    _reject_declared_size(request, field_name, max_bytes)
    boundary = _multipart_boundary(request)

    collector = _PartCollector(field_name, max_files)
    parser: MultipartParser | None = None
    # A small body is held whole and split in one pass; a larger one streams
    # through the incremental parser as it arrives.
    held: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            if parser is None and received <= WHOLE_BODY_MAX_BYTES:
                held.append(chunk)
                continue
            if parser is None:
                parser = _incremental_parser(boundary, collector)
                for earlier in held:
                    parser.write(earlier)
                held.clear()
            parser.write(chunk)
        if parser is None and held:
            body = b"".join(held)
            parts = split_simple_multipart(body, boundary)
            if parts is not None:
                collector.add_parts(parts)
            else:
                # Anything unusual is left to the full parser, which decides.
                parser = _incremental_parser(boundary, collector)
                parser.write(body)
        if parser is not None:
            parser.finalize()
    except FormParserError as exc:
        raise NotMultipartError("The multipart/form-data body is malformed.") from exc

    if received == 0:
        raise _empty_body(field_name)
    if parser is not None and parser.state != MultipartState.END:
        raise NotMultipartError(
            "The multipart/form-data body ends before its closing boundary."
        )
    if not collector.files:
        raise MissingFileError(
            _describe_missing_field(field_name, collector.other_fields)
        )
    return collector.files


def _incremental_parser(boundary: bytes, collector: _PartCollector) -> MultipartParser:
    return MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
        },
    )


def split_simple_multipart(
    body: bytes, boundary: bytes
) -> list[tuple[dict[bytes, bytes], bytes]] | None:
    """Return the (headers, data) of each part of a plainly formed body, or None.

    Covers what clients send: the first boundary at the start, CRLF line ends,
    "Name: value" headers and a closing boundary. Header names come back in lower
    case, values without the spaces before them, as the incremental parser gives
    them. Anything else (a preamble, bare LF, padding after a boundary, oversized
    or odd headers, a missing closing boundary) returns None, and the incremental
    parser, which is the reference for every error, reads the body instead.
    """
    delimiter = b"--" + boundary
    if not body.startswith(delimiter + b"\r\n"):
        return None
    separator = b"\r\n" + delimiter
    parts: list[tuple[dict[bytes, bytes], bytes]] = []
    start = len(delimiter) + 2
    while True:
        headers_end = body.find(b"\r\n\r\n", start)
        if headers_end < 0 or headers_end - start > _MAX_SIMPLE_HEADER_BYTES:
            return None
        headers = _split_headers(body[start:headers_end])
        if headers is None:
            return None
        data_start = headers_end + 4
        data_end = body.find(separator, data_start)
        if data_end < 0:
            return None
        parts.append((headers, body[data_start:data_end]))
        after = data_end + len(separator)
        if body.startswith(b"--", after):
            return parts
        if not body.startswith(b"\r\n", after):
            return None
        start = after + 2


def _split_headers(block: bytes) -> dict[bytes, bytes] | None:
    """Return a part's headers by lower-case name, or None if any line is unusual."""
    if not block or b"\n\r" in block:
        return None
    lines = block.split(b"\r\n")
    if len(lines) > _MAX_SIMPLE_HEADERS:
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TOKEN_BYTES):
            return None
        if b"\n" in value or b"\r" in value:
            return None
        headers[name.lower()] = value.lstrip(b" ")
    return headers


def parse_options(value: str | bytes | None) -> tuple[bytes, dict[bytes, bytes]]:
    """Return a header's lower-case value and its parameters, as python-multipart does.

    A plainly formed header is split with two regular expressions, at a fraction of
    python-multipart's cost; anything else (escapes, RFC 2231 names, odd spacing) is
    left to ``parse_options_header``, whose answer this always equals.
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if not text:
        return b"", {}
    plain = _PLAIN_OPTIONS_HEADER.fullmatch(text)
    if plain is None:
        return parse_options_header(text)
    options = {
        key.lower().encode("latin-1"): (quoted or bare).encode("latin-1")
        for key, quoted, bare in _PLAIN_OPTION.findall(plain.group(2))
    }
    return plain.group(1).lower().encode("latin-1"), options


def _multipart_boundary(request: Request) -> bytes:
    content_type, options = parse_options(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        shown = content_type.decode("latin-1") or "none"
        raise NotMultipartError(
            "Expected a multipart/form-data body with a boundary; "
            f"got content type '{shown}'."
        )
    return boundary


def _reject_declared_size(request: Request, field_name: str, max_bytes: int) -> None:
    """Refuse on Content-Length alone: nothing of a doomed body needs reading."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        return
    if int(declared) > max_bytes:
        raise _too_large(max_bytes)
    if int(declared) == 0:
        raise _empty_body(field_name)


def _too_large(max_bytes: int) -> UploadTooLargeError:
    return UploadTooLargeError(
        f"The request body exceeds the upload limit of {max_bytes} bytes."
    )


def _empty_body(field_name: str) -> EmptyUploadError:
    return EmptyUploadError(
        f"The request body is empty; expected a file in multipart field '{field_name}'."
    )


def _describe_missing_field(field_name: str, other_fields: list[str]) -> str:
    message = f"Expected a file in multipart field '{field_name}'"
    if not other_fields:
        return message + "; the body has no parts."
    listed = ", ".join(repr(name[:40]) for name in other_fields[:_MAX_LISTED_FIELDS])
    return message + f"; got fields {listed}."
