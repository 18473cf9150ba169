"""FETCH and UID FETCH (RFC 9051 section 6.4.5), BINARY (RFC 3516),
CHANGEDSINCE and MODSEQ (RFC 7162 section 3.1.4), VANISHED (section 3.2.6), EMAILID and
THREADID (RFC 8474 section 5), SAVEDATE (RFC 8514 section 4.2) and PREVIEW (RFC 8970 section 3).

Everything is served from what was stored at delivery: ENVELOPE and BODYSTRUCTURE
are stored wire bytes, sections are slices of the raw message at stored offsets.
Content is loaded in batches so a FETCH 1:* of a large mailbox keeps memory bounded.

Two common FETCHes read less than that: listing headers (BODY.PEEK[HEADER.FIELDS (...)],
RFC822.HEADER) reads only the header block stored apart at delivery, and downloading
whole messages (BODY[], RFC822) reads only the raw bytes, without the part tree.
A first sync (ENVELOPE, BODY, BODYSTRUCTURE and no other content item) reads only
their wire bytes, stored apart at delivery, and decodes no metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from mailhaven.codec import commands as c
from mailhaven.codec import responses, wire
from mailhaven.codec.commands import FetchAttribute, Section
from mailhaven.codec.responses import Tagged
from mailhaven.imap import condstore, fetch_columns
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.imap.session import Session, bad, no
from mailhaven.mime import (
    MessageMetadata,
    UnknownCTE,
    binary_bytes,
    binary_size,
    preview,
    section_bytes,
)
from mailhaven.mime.sections import header_block_section, is_header_section
from mailhaven.storage.interface import MessageContent, MessageObjectData, StoredWire

BATCH = 256  # messages whose content is loaded at once
BATCH_BYTES = 8 * 1024 * 1024  # and at most this much of their raw text (one at least)

_NEEDS_RAW = frozenset(
    {"RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]", "BINARY", "BINARY.SIZE"}
)
_NEEDS_METADATA = _NEEDS_RAW | {"ENVELOPE", "BODY", "BODYSTRUCTURE", "PREVIEW"}
_NEEDS_OBJECT_DATA = frozenset({"EMAILID", "SAVEDATE"})
_STORED_WIRE = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE"})
_SETS_SEEN = frozenset({"RFC822", "RFC822.TEXT", "BODY[]", "BINARY"})
_SUPPORTED = (
    _NEEDS_METADATA
    | _NEEDS_OBJECT_DATA
    | {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "UID", "MODSEQ", "THREADID"}
)

_HEADER = Section(text="HEADER")
_TEXT = Section(text="TEXT")
_WHOLE = Section()


class _Message:
    """What one FETCH response is built from."""

    __slots__ = ("uid", "number", "raw", "metadata", "objects", "header", "wire")

    def __init__(
        self,
        uid: int,
        number: int,
        content: MessageContent | None,
        objects: MessageObjectData | None,
        header: bytes | None = None,
        wire: StoredWire | None = None,
    ) -> None:
        self.uid = uid
        self.number = number
        self.raw = content.raw if content else None
        meta = content.metadata if content else None
        self.metadata = MessageMetadata.from_bytes(meta) if meta is not None else None
        self.objects = objects
        self.header = header  # the top-level header block, when only that was loaded
        self.wire = wire  # ENVELOPE, BODY, BODYSTRUCTURE, when only those were loaded


class _Loading:
    """What a FETCH reads for its items: the header blocks alone when every item that
    needs content is a top-level header section; the stored wire bytes alone when every
    such item is ENVELOPE, BODY or BODYSTRUCTURE; otherwise the raw message and/or its
    metadata (the part tree is not needed for the whole message)."""

    def __init__(self, attributes: list[FetchAttribute]) -> None:
        content = [a for a in attributes if a.name in _NEEDS_METADATA]
        self.headers = bool(content) and all(map(_is_header_item, content))
        self.wire = bool(content) and all(a.name in _STORED_WIRE for a in content)
        apart = self.headers or self.wire
        self.raw = not apart and any(a.name in _NEEDS_RAW for a in content)
        self.metadata = not apart and not all(map(_is_whole_message, content))
        self.objects = any(a.name in _NEEDS_OBJECT_DATA for a in attributes)

    @property
    def content(self) -> bool:
        return self.raw or self.metadata

    @property
    def encoder(self) -> Callable[[Iterable[tuple[int, list[tuple[bytes, bytes]]]]], bytes]:
        if self.raw or self.headers:
            return responses.encoded_fetches_with_literals
        return responses.encoded_fetches


def _is_header_item(attr: FetchAttribute) -> bool:
    return attr.name == "RFC822.HEADER" or (
        attr.name == "BODY[]" and is_header_section(attr.section)
    )


def _is_whole_message(attr: FetchAttribute) -> bool:
    return attr.name == "RFC822" or (attr.name == "BODY[]" and attr.section == _WHOLE)


async def fetch(session: Session, command: c.Fetch) -> Tagged:
    view = session.require_selected()
    if not command.uid and not view.sequence_in_range(command.sequence):
        raise bad("Invalid message sequence number")
    unsupported = [a.name for a in command.attributes if a.name not in _SUPPORTED]
    if unsupported:
        raise bad(f"Unsupported FETCH item {unsupported[0]}")
    if command.vanished and "QRESYNC" not in session.enabled:
        raise bad("The VANISHED modifier needs ENABLE QRESYNC first")  # RFC 7162 3.2.6
    attributes = list(command.attributes)
    uids = view.resolve(command.sequence, uid=command.uid, saved=session.saved_search or ())
    if command.changed_since is not None:
        # RFC 7162 3.1.4.1: CHANGEDSINCE implies MODSEQ in the results.
        changed = await condstore.changed_since(session, view, command.changed_since)
        uids = condstore.among(changed, uids)
        if not any(a.name == "MODSEQ" for a in attributes):
            attributes.append(FetchAttribute("MODSEQ"))
    if any(a.name == "MODSEQ" for a in attributes):
        await condstore.enable_condstore(session)
    if command.vanished:
        assert command.changed_since is not None  # the parser insists on both
        ranges = condstore.uid_ranges(command.sequence, view, session.saved_search or ())
        await condstore.report_vanished_earlier(session, view, command.changed_since, ranges)
    await _mark_seen(session, view, uids, attributes)
    if fetch_columns.served_from_view(attributes):
        # Every resolved UID is in the view, so none can be missing here.
        for chunk in fetch_columns.encoded_chunks(view, view.indexes_of(uids), attributes):
            await session.send_encoded(chunk)
        return Tagged(command.tag, "OK", "FETCH completed")
    load = _Loading(attributes)
    encode_items = _item_encoder(view, attributes)
    missing = 0
    for batch in _batches(view, uids, load):
        loaded = await _load_batch(session, view, load, batch)
        messages = []
        for uid in batch:
            message = loaded.message(view, load, uid)
            if message is None:
                missing += 1
            else:
                messages.append(message)
        await _load_raw_for_old_previews(session, view, messages, attributes)
        await session.send_encoded(load.encoder((m.number, encode_items(m)) for m in messages))
    if missing:
        raise no("Some messages were expunged by another session", b"EXPUNGEISSUED")
    return Tagged(command.tag, "OK", "FETCH completed")


def _batches(view: SelectedMailbox, uids: Sequence[int], load: _Loading) -> list[list[int]]:
    """*uids* in batches of at most BATCH messages and, when the raw messages are
    loaded, at most BATCH_BYTES of them (one message at least), so that a batch of
    large messages does not hold hundreds of megabytes."""
    if not load.raw:
        return [list(uids[start : start + BATCH]) for start in range(0, len(uids), BATCH)]
    batches: list[list[int]] = []
    batch: list[int] = []
    size = 0
    sizes = view.sizes
    for uid, index in zip(uids, view.indexes_of(uids), strict=True):
        message_size = sizes[index]
        if batch and (len(batch) == BATCH or size + message_size > BATCH_BYTES):
            batches.append(batch)
            batch, size = [], 0
        batch.append(uid)
        size += message_size
    if batch:
        batches.append(batch)
    return batches


class _Loaded:
    """What was read for one batch."""

    def __init__(
        self,
        contents: dict[int, MessageContent],
        headers: dict[int, bytes],
        wires: dict[int, StoredWire],
        objects: dict[int, MessageObjectData],
    ) -> None:
        self.contents, self.headers, self.wires, self.objects = contents, headers, wires, objects

    def message(self, view: SelectedMailbox, load: _Loading, uid: int) -> _Message | None:
        """What the response for *uid* is built from; None when it was expunged meanwhile
        (by another session: its content is gone, or the view no longer holds it)."""
        number = view.sequence_number(uid)
        content = self.contents.get(uid)
        header = self.headers.get(uid)
        wire = self.wires.get(uid)
        if (
            number is None
            or (load.content and content is None)
            or (load.headers and header is None)
            or (load.wire and wire is None and content is None)
            or (load.objects and uid not in self.objects)
        ):
            return None
        return _Message(uid, number, content, self.objects.get(uid), header, wire)


async def _load_batch(
    session: Session, view: SelectedMailbox, load: _Loading, batch: list[int]
) -> _Loaded:
    contents: dict[int, MessageContent] = {}
    if load.content:
        loaded = await session.storage.fetch_content(
            view.mailbox.id, batch, raw=load.raw, metadata=load.metadata
        )
        contents = {content.uid: content for content in loaded}
    headers: dict[int, bytes] = {}
    if load.headers:
        headers = await session.storage.fetch_headers(view.mailbox.id, batch)
    wires: dict[int, StoredWire] = {}
    if load.wire:
        wires = await session.storage.fetch_wire(view.mailbox.id, batch)
        contents = await _metadata_lacking_wire(session, view, batch, wires)
    objects: dict[int, MessageObjectData] = {}
    if load.objects:
        found = await session.storage.object_data(view.mailbox.id, batch)
        objects = {item.uid: item for item in found}
    return _Loaded(contents, headers, wires, objects)


async def _metadata_lacking_wire(
    session: Session, view: SelectedMailbox, batch: list[int], wires: dict[int, StoredWire]
) -> dict[int, MessageContent]:
    """The metadata of the messages of *batch* stored without their wire bytes (none
    after the migration that stores them, unless their metadata did not decode then), so
    they are answered from the metadata as before."""
    lacking = [uid for uid in batch if uid not in wires]
    if not lacking:
        return {}
    loaded = await session.storage.fetch_content(view.mailbox.id, lacking, raw=False, metadata=True)
    return {content.uid: content for content in loaded}


async def _load_raw_for_old_previews(
    session: Session, view: SelectedMailbox, messages: list[_Message], attributes: list
) -> None:
    """Messages stored before previews were computed at delivery have none in
    their metadata; without LAZY the preview must still be sent (RFC 8970 section
    3.2), so it is computed from the raw message."""
    if not any(a.name == "PREVIEW" and not a.lazy for a in attributes):
        return
    stale = {m.uid: m for m in messages if m.raw is None and _metadata(m).preview is None}
    if not stale:
        return
    loaded = await session.storage.fetch_content(
        view.mailbox.id, list(stale), raw=True, metadata=False
    )
    for content in loaded:
        stale[content.uid].raw = content.raw


def _preview(view: SelectedMailbox, message: _Message, attr: FetchAttribute) -> bytes:
    """RFC 8970 section 3.2: NIL only for LAZY, when there is no stored preview."""
    metadata = _metadata(message)
    if metadata.preview is None and message.raw is None:
        return wire.NIL
    return wire.nstring(preview(message.raw or b"", metadata).encode("utf-8"))


def _objects(message: _Message) -> MessageObjectData:
    assert message.objects is not None
    return message.objects


async def _mark_seen(
    session: Session, view: SelectedMailbox, uids: Sequence[int], attributes: list[FetchAttribute]
) -> None:
    """RFC 9051 6.4.5: fetching BODY[...] (not .PEEK) sets \\Seen; the changed flags
    are then reported in the same FETCH response."""
    if view.readonly or not any(a.name in _SETS_SEEN and not a.peek for a in attributes):
        return
    unseen = [u for u in uids if "\\Seen" not in view.flags_of(u)]
    if not unseen:
        return
    result = await session.storage.store_flags(view.mailbox.id, unseen, "+", frozenset({"\\Seen"}))
    view.record_own_changes(result.changed)
    # RFC 7162 section 3.2.4: the changed flags come with UID and MODSEQ once
    # CONDSTORE is on.
    implied = ["FLAGS", "UID", "MODSEQ"] if view.condstore else ["FLAGS"]
    for name in implied:
        if not any(a.name == name for a in attributes):
            attributes.append(FetchAttribute(name))


def _item_encoder(
    view: SelectedMailbox, attributes: list[FetchAttribute]
) -> Callable[[_Message], list[tuple[bytes, bytes]]]:
    """The (name, value) pairs of one message's response; names and encoders are
    looked up once per command, since FETCH 1:* repeats them for every message."""
    plan = [(_response_name(attr), _ENCODERS[attr.name], attr) for attr in attributes]

    def encode(message: _Message) -> list[tuple[bytes, bytes]]:
        return [(name, encoder(view, message, attr)) for name, encoder, attr in plan]

    return encode


def _response_name(attr: FetchAttribute) -> bytes:
    """The item name echoed in the response: ``BODY[1.HEADER]<0>`` keeps only the
    origin octet of a partial (RFC 9051 section 7.5.2); .PEEK is dropped."""
    name = attr.name
    if attr.section is None:
        return name.encode("ascii")
    base = "BODY" if name == "BODY[]" else name
    text = base.encode("ascii") + b"[" + _section_spec(attr.section) + b"]"
    if attr.partial is not None and name != "BINARY.SIZE":
        text += b"<%d>" % attr.partial[0]
    return text


def _section_spec(section: Section) -> bytes:
    parts = [b".".join(b"%d" % n for n in section.part)] if section.part else []
    if section.text:
        parts.append(section.text.encode("ascii"))
    spec = b".".join(parts)
    if section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        spec += b" " + wire.paren(wire.astring(f) for f in section.fields)
    return spec


def _partial(data: bytes, attr: FetchAttribute) -> bytes:
    if attr.partial is None:
        return data
    offset, count = attr.partial
    return data[offset : offset + count]


def _body_value(data: bytes) -> bytes:
    """A BODY[...] value.  RFC 9051 section 4.3: NUL may only travel in a BINARY
    literal8, so NULs stored in a message (appended as ~{n}) are sent as 0x80, as
    Dovecot does; the size stays the same and BINARY[] still returns the bytes."""
    if not data:
        return b'""'
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return wire.literal(data)


def _raw(message: _Message) -> bytes:
    assert message.raw is not None
    return message.raw


def _metadata(message: _Message) -> MessageMetadata:
    assert message.metadata is not None
    return message.metadata


def _stored_wire(message: _Message) -> StoredWire | MessageMetadata:
    """Where ENVELOPE, BODY and BODYSTRUCTURE come from: the wire bytes when only they
    were loaded, else the metadata (both hold the same bytes)."""
    return message.wire if message.wire is not None else _metadata(message)


def _section(message: _Message, section: Section) -> bytes:
    if message.header is not None:
        return header_block_section(message.header, section)
    if section == _WHOLE:
        return _raw(message)  # the whole message: no need for the part tree
    return section_bytes(_raw(message), _metadata(message), section)


def _binary(view: SelectedMailbox, message: _Message, attr: FetchAttribute) -> bytes:
    assert attr.section is not None
    try:
        data = binary_bytes(_raw(message), _metadata(message), attr.section.part)
    except UnknownCTE:
        raise no("Cannot decode this part's content transfer encoding", b"UNKNOWN-CTE") from None
    data = _partial(data, attr)
    if b"\0" in data:
        return b"~" + wire.literal(data)  # literal8, RFC 3516 section 4.2
    return _body_value(data)


def _binary_size(view: SelectedMailbox, message: _Message, attr: FetchAttribute) -> bytes:
    assert attr.section is not None
    try:
        return b"%d" % binary_size(_raw(message), _metadata(message), attr.section.part)
    except UnknownCTE:
        raise no("Cannot decode this part's content transfer encoding", b"UNKNOWN-CTE") from None


Encoder = Callable[[SelectedMailbox, _Message, FetchAttribute], bytes]

_ENCODERS: dict[str, Encoder] = {
    "UID": lambda view, m, a: b"%d" % m.uid,
    # The view's columns are indexed by sequence number - 1.
    "FLAGS": lambda view, m, a: view.flag_list_at(m.number - 1),
    "INTERNALDATE": lambda view, m, a: wire.date_time(view.internal_date_at(m.number - 1)),
    "RFC822.SIZE": lambda view, m, a: b"%d" % view.sizes[m.number - 1],
    "MODSEQ": lambda view, m, a: b"(%d)" % view.modseqs[m.number - 1],
    "ENVELOPE": lambda view, m, a: _stored_wire(m).envelope,
    "BODY": lambda view, m, a: _stored_wire(m).body,
    "BODYSTRUCTURE": lambda view, m, a: _stored_wire(m).bodystructure,
    "RFC822": lambda view, m, a: _body_value(_raw(m)),
    "RFC822.HEADER": lambda view, m, a: _body_value(_section(m, _HEADER)),
    "RFC822.TEXT": lambda view, m, a: _body_value(_section(m, _TEXT)),
    "BODY[]": lambda view, m, a: _body_value(_partial(_section(m, a.section or _WHOLE), a)),
    "BINARY": _binary,
    "BINARY.SIZE": _binary_size,
    "EMAILID": lambda view, m, a: b"(M%d)" % _objects(m).email_id,
    "THREADID": lambda view, m, a: wire.NIL,  # RFC 8474 section 5.2: no THREADIDs here
    "SAVEDATE": lambda view, m, a: wire.date_time(_objects(m).save_date),
    "PREVIEW": _preview,
}
