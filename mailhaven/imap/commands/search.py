"""SEARCH and UID SEARCH (RFC 9051 section 6.4.4), with ESEARCH result options
(RFC 4731) and the saved result ``$`` (SEARCHRES, RFC 5182)."""

from __future__ import annotations

from mailhaven.codec import commands as c
from mailhaven.codec import responses, wire
from mailhaven.codec.responses import Tagged
from mailhaven.imap import condstore
from mailhaven.imap.search import matching_uids
from mailhaven.imap.session import Session


async def search(session: Session, command: c.Search) -> Tagged:
    view = session.require_selected()
    if _uses_modseq(command.key):
        await condstore.enable_condstore(session)  # RFC 7162 section 3.1
    options = command.return_options
    if options is None and session.rev2:
        options = ("ALL",)  # RFC 9051 6.4.4: ESEARCH is the only result form in rev2
    saving = options is not None and "SAVE" in options
    try:
        uids = await matching_uids(
            session.storage, view, command.key, saved=set(session.saved_search or ())
        )
    except Exception:
        if saving:
            session.saved_search = []  # RFC 5182 section 2.1: a failed SAVE empties $
        raise
    if saving:
        session.saved_search = _saved_result(uids, options or ())
    numbers = uids if command.uid else view.sequence_numbers(uids)
    with_modseq = _uses_modseq(command.key)
    highest = max(map(view.modseq_of, uids), default=None) if with_modseq else None
    if options is None:
        await session.send(responses.search(numbers, highest if uids else None))
    elif options != ("SAVE",):
        await session.send(_esearch(command, options or ("ALL",), numbers, highest))
    return Tagged(command.tag, "OK", "SEARCH completed")


def _saved_result(uids: list[int], options: tuple[str, ...]) -> list[int]:
    """RFC 5182 section 2.4: with MIN and/or MAX but neither ALL nor COUNT beside
    SAVE, "$" holds only the messages those items return."""
    extremes = {"MIN", "MAX"} & set(options)
    if not uids or not extremes or {"ALL", "COUNT"} & set(options):
        return uids
    kept = [uids[0]] if "MIN" in extremes else []
    if "MAX" in extremes and uids[-1] not in kept:
        kept.append(uids[-1])
    return kept


def _esearch(
    command: c.Search, options: tuple[str, ...], numbers: list[int], highest: int | None
) -> responses.Data:
    """RFC 4731 section 3.1: MIN/MAX/ALL are omitted when nothing matched."""
    results: list[tuple[str, bytes]] = []
    if numbers:
        if "MIN" in options:
            results.append(("MIN", b"%d" % numbers[0]))
        if "MAX" in options:
            results.append(("MAX", b"%d" % numbers[-1]))
        if "ALL" in options:
            results.append(("ALL", wire.sequence_set(numbers)))
    if "COUNT" in options:
        results.append(("COUNT", b"%d" % len(numbers)))
    if highest is not None and numbers:
        results.append(("MODSEQ", b"%d" % highest))
    return responses.esearch(command.tag, command.uid, results)


def _uses_modseq(key: c.SearchKey) -> bool:
    if key.op == "MODSEQ":
        return True
    if key.op == "NOT":
        return _uses_modseq(key.args)  # type: ignore[arg-type]
    if key.op in ("OR", "AND"):
        return any(_uses_modseq(k) for k in key.args)  # type: ignore[union-attr]
    return False
