"""Property tests: analyze() accepts any bytes and its offsets stay in the message."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailhaven.codec.commands import Section
from mailhaven.mime import MessageMetadata, analyze, section_bytes

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "messages"
SAMPLES = sorted(CORPUS.glob("*.eml"))[::20]

# Fragments that steer random data towards MIME structure.
FRAGMENTS = [
    b"\r\n",
    b"\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"--c\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/digest; boundary=c\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b'From: a <b@c>, (x) "q\\" " <@r:d@e>; g: ;\r\n',
    b" folded\r\n",
    b"=?utf-8?q?x=C3?=",
    b"=?NONE?B?",  # encoded words with broken charsets and base64
    b"=?\x00?Q?",
    b"?=",
]


def _check(raw: bytes) -> None:
    analyzed = analyze(raw)
    metadata = analyzed.metadata
    root = metadata.root
    assert root.header_start == 0
    for part in root.walk():
        assert 0 <= part.header_start <= part.body_start <= part.body_end <= len(raw)
        for child in part.children:
            assert part.body_start <= child.header_start
            assert child.body_end <= part.body_end
    assert MessageMetadata.from_bytes(metadata.to_bytes()) == metadata
    assert section_bytes(raw, metadata, Section()) == raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_analyze_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=20), max_size=60))
def test_analyze_never_raises_on_mime_like_input(chunks: list[bytes]) -> None:
    _check(b"".join(chunks))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(SAMPLES),
    cuts=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.binary(max_size=30)), max_size=5),
)
def test_analyze_never_raises_on_mutated_corpus_messages(
    sample: Path, cuts: list[tuple[float, float, bytes]]
) -> None:
    raw = sample.read_bytes()
    for start_fraction, length_fraction, insert in cuts:
        start = int(start_fraction * len(raw))
        end = start + int(length_fraction * 200)
        raw = raw[:start] + insert + raw[end:]
    _check(raw)


def test_inputs_found_by_scripts_fuzz() -> None:
    """Each of these made analyze() raise before (found by a long scripts/fuzz run)."""
    _check(b"Subject: =?NONE?B?\x00EVTVA=?=\r\n\r\nTEST\r\n")  # bad base64: HeaderParseError
    _check(b"Subject: =?\x00ONE?B?VEVTVA=?=\r\n\r\nTEST\r\n")  # NUL in the charset name


def test_deep_nesting_is_bounded() -> None:
    depth = 500
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=%d\r\n\r\n--%d\r\n" % (i, i) for i in range(depth)
    )
    root = analyze(raw).metadata.root
    assert sum(1 for _ in root.walk()) < depth
