"""The one-pass split of small multipart bodies reads them as the full parser does.

``split_simple_multipart`` may decline any body (the incremental parser then reads
it), but a body it accepts must give exactly the parts the incremental parser
gives, and the incremental parser must accept it too.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState

from mnist_backend.api.uploads import split_simple_multipart

Parts = list[tuple[dict[bytes, bytes], bytes]]

BOUNDARY = b"----formboundary7d3f"
names = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"'),
    max_size=12,
)
payloads = st.binary(max_size=300) | st.sampled_from(
    [b"", b"\r\n", b"--", b"\r\n--", b"\r\n------formboundary7d3", b"\r\n\r\n"]
)


def reference_parts(body: bytes, boundary: bytes) -> Parts | None:
    """Return what python-multipart reads from ``body``, or None if it refuses it."""
    parts: Parts = []
    current: dict[str, object] = {}
    field, value = bytearray(), bytearray()

    def begin() -> None:
        current.clear()
        current.update(headers={}, data=bytearray())

    def header_end() -> None:
        headers = current["headers"]
        assert isinstance(headers, dict)
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def data(chunk: bytes, start: int, end: int) -> None:
        buffer = current["data"]
        assert isinstance(buffer, bytearray)
        buffer += chunk[start:end]

    def end() -> None:
        headers, buffer = current["headers"], current["data"]
        assert isinstance(headers, dict)
        assert isinstance(buffer, bytearray)
        parts.append((headers, bytes(buffer)))

    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": begin,
            "on_header_field": lambda d, s, e: field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: value.extend(d[s:e]),
            "on_header_end": header_end,
            "on_part_data": data,
            "on_part_end": end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError:
        return None
    return parts if parser.state == MultipartState.END else None


def encode(parts: list[tuple[str, str | None, str | None, bytes]]) -> bytes:
    body = b""
    for name, filename, content_type, payload in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += b"--" + BOUNDARY + b"\r\n"
        body += f"Content-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + payload + b"\r\n"
    return body + b"--" + BOUNDARY + b"--\r\n"


part_lists = st.lists(
    st.tuples(names, st.none() | names, st.none() | names, payloads),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(parts=part_lists)
def test_well_formed_bodies_split_like_the_incremental_parser(
    parts: list[tuple[str, str | None, str | None, bytes]],
) -> None:
    body = encode(parts)
    expected = reference_parts(body, BOUNDARY)

    found = split_simple_multipart(body, BOUNDARY)

    # Payloads may contain the delimiter itself; then both must still agree.
    if found is not None:
        assert found == expected
    assert expected is not None


@settings(max_examples=600, deadline=None)
@given(
    parts=part_lists,
    cut=st.integers(min_value=0, max_value=2000),
    position=st.integers(min_value=0, max_value=2000),
    replacement=st.binary(max_size=3),
)
def test_damaged_bodies_are_declined_or_read_like_the_incremental_parser(
    parts: list[tuple[str, str | None, str | None, bytes]],
    cut: int,
    position: int,
    replacement: bytes,
) -> None:
    body = encode(parts)
    index = position % (len(body) + 1)
    damaged = (body[:index] + replacement + body[index + len(replacement) :])[
        : len(body) - cut % 8
    ]

    found = split_simple_multipart(damaged, BOUNDARY)

    if found is not None:
        assert found == reference_parts(damaged, BOUNDARY)


def test_plain_upload_is_split_into_its_headers_and_bytes() -> None:
    body = encode([("file", "digit.png", "image/png", b"\x89PNG\r\n--x")])

    found = split_simple_multipart(body, BOUNDARY)

    assert found == [
        (
            {
                b"content-disposition": b'form-data; name="file"; filename="digit.png"',
                b"content-type": b"image/png",
            },
            b"\x89PNG\r\n--x",
        )
    ]


def test_unusual_bodies_are_left_to_the_incremental_parser() -> None:
    plain = encode([("file", "a.png", None, b"data")])
    unusual = [
        b"preamble\r\n" + plain,
        plain.replace(b"\r\n", b"\n"),
        plain[: -len(b"--\r\n") - len(BOUNDARY)],
        plain.replace(b"Content-Disposition:", b"Content Disposition:"),
        plain.replace(BOUNDARY + b"\r\n", BOUNDARY + b"  \r\n", 1),
    ]

    assert [split_simple_multipart(body, BOUNDARY) for body in unusual] == [None] * 5
