"""Header parameters are read exactly as python-multipart reads them, faster or not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.multipart import parse_options_header

from mnist_backend.api.uploads import parse_options

# Pieces clients and attackers put in Content-Type and Content-Disposition values.
pieces = st.sampled_from(
    [
        "multipart/form-data",
        "Form-Data",
        "form-data",
        ";",
        "; ",
        " ",
        "\t",
        "=",
        '"',
        "\\",
        '\\"',
        "name",
        "NAME",
        "filename",
        "filename*",
        "boundary",
        "x",
        "7.png",
        "a b",
        "utf-8''%E2%82%AC.png",
        "\r\n",
        "é",
        "--",
    ]
)
# HTTP header values reach the service as latin-1 text.
headers = st.lists(pieces, max_size=14).map("".join) | st.text(
    st.characters(max_codepoint=255), max_size=40
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "multipart/form-data; boundary=----x7d3f",
            (b"multipart/form-data", {b"boundary": b"----x7d3f"}),
        ),
        (
            'form-data; name="file"; filename="seven.png"',
            (b"form-data", {b"name": b"file", b"filename": b"seven.png"}),
        ),
        (
            "Multipart/Form-Data; BOUNDARY=Ab",
            (b"multipart/form-data", {b"boundary": b"Ab"}),
        ),
        (None, (b"", {})),
        ("", (b"", {})),
    ],
)
def test_plain_headers_are_split_into_value_and_parameters(
    header: str | None, expected: tuple[bytes, dict[bytes, bytes]]
) -> None:
    assert parse_options(header) == expected


def test_escaped_and_extended_parameters_are_read_by_python_multipart() -> None:
    header = 'form-data; name="a\\"b"; filename*=utf-8\'\'%E2%82%AC.png'
    assert parse_options(header) == parse_options_header(header)
    assert parse_options(header)[1][b"name"] == b'a"b'


@settings(max_examples=3000, deadline=None)
@given(headers)
def test_any_header_is_read_as_python_multipart_reads_it(header: str) -> None:
    assert parse_options(header) == parse_options_header(header)
    raw = header.encode("latin-1")
    assert parse_options(raw) == parse_options_header(raw)
