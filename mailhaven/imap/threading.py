"""The THREAD algorithms of RFC 5256 section 3: ORDEREDSUBJECT and REFERENCES.

Pure functions over :class:`ThreadMessage` records; the handler in
``imap/commands/sort_thread.py`` gathers the records from stored metadata.  Trees
are walked with explicit stacks, so a reply chain thousands of messages long does
not hit Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from mailhaven.mime.sortkeys import SortData


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    number: int  # what the response shows: sequence number or UID
    position: int  # sequence number, the tie-breaker of RFC 5256 section 2.2
    sent: float  # sent date as a UTC timestamp (RFC 5256 section 2.2)
    sort: SortData


@dataclass(eq=False)
class Node:
    """A message in a thread tree; ``message`` is None for a dummy."""

    message: ThreadMessage | None = None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)


# --------------------------------------------------------------------------- output


def encode_threads(roots: list[Node]) -> bytes:
    """The THREAD response data (RFC 5256 section 4): ``(2)(3 6 (4 23)(44 7 96))``."""
    return b"".join(b"(" + _members(root) + b")" for root in roots)


def _members(node: Node) -> bytes:
    words: list[bytes] = []
    while True:  # a chain of only children is written flat: "3 6"
        if node.message is not None:
            words.append(b"%d" % node.message.number)
        if len(node.children) != 1:
            break
        node = node.children[0]
    branches = b"".join(b"(" + _members(child) + b")" for child in node.children)
    return b" ".join([*words, branches] if branches else words)


# --------------------------------------------------------------------------- ORDEREDSUBJECT


def ordered_subject(messages: list[ThreadMessage]) -> list[Node]:
    """RFC 5256 section 3 ORDEREDSUBJECT: group by base subject, each group's
    first message (by sent date) the parent of all the others, threads in the
    order of their first message's sent date."""
    ordered = sorted(messages, key=lambda m: (m.sort.base_subject, m.sent, m.position))
    threads: list[Node] = []
    for message in ordered:
        if threads and threads[-1].message.sort.base_subject == message.sort.base_subject:  # type: ignore[union-attr]
            head = threads[-1]
            head.children.append(Node(message, head))
        else:
            threads.append(Node(message))
    threads.sort(key=_date_key)
    return threads


# --------------------------------------------------------------------------- REFERENCES


def references(messages: list[ThreadMessage]) -> list[Node]:
    """RFC 5256 section 3 REFERENCES, steps 1 to 6; *messages* in sequence order."""
    containers = _link_references(sorted(messages, key=lambda m: m.position))
    roots = [node for node in containers if node.parent is None]  # step 2
    roots = _prune(roots)  # step 3
    roots.sort(key=_date_key)  # step 4
    roots = _merge_by_subject(roots)  # step 5
    _sort_siblings(roots)  # step 6
    roots.sort(key=_date_key)
    return roots


def _link_references(messages: list[ThreadMessage]) -> list[Node]:
    """Step 1: containers for all messages and referenced ids, linked parent/child."""
    by_id: dict[str, Node] = {}
    containers: list[Node] = []

    def container_for(message_id: str) -> Node:
        if message_id not in by_id:
            by_id[message_id] = Node()
            containers.append(by_id[message_id])
        return by_id[message_id]

    for message in messages:
        own_id = message.sort.message_id
        if own_id is not None and own_id in by_id and by_id[own_id].message is None:
            node = by_id[own_id]  # a dummy made by an earlier reference
            node.message = message
        else:
            # No Message-ID, or a duplicate one: the message gets a unique id.
            node = Node(message)
            containers.append(node)
            if own_id is not None and own_id not in by_id:
                by_id[own_id] = node
        previous: Node | None = None
        for reference in message.sort.references:  # step 1.A
            current = container_for(reference)
            if previous is not None and current.parent is None:
                _adopt(previous, current)
            previous = current
        if node.parent is not None:  # step 1.B: the last reference is the parent
            _detach(node)
        if previous is not None:
            _adopt(previous, node)
    return containers


def _is_descendant(node: Node, ancestor: Node) -> bool:
    current: Node | None = node
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False


def _adopt(parent: Node, child: Node) -> None:
    """Make *child* a child of *parent*, unless that would make a loop."""
    if _is_descendant(parent, child):
        return
    _detach(child)
    child.parent = parent
    parent.children.append(child)


def _detach(node: Node) -> None:
    if node.parent is not None:
        node.parent.children.remove(node)
        node.parent = None


def _post_order(roots: list[Node]) -> Iterator[Node]:
    """Every node after all its descendants."""
    stack: list[tuple[Node, bool]] = [(root, False) for root in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            yield node
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.children))


def _prune(roots: list[Node]) -> list[Node]:
    """Step 3: dummies go; their children take their place, except that several
    children are not promoted to the root level."""
    holder = Node(children=roots)
    for root in roots:
        root.parent = holder
    for node in list(_post_order(roots)):
        parent = node.parent
        if node.message is not None or parent is None:
            continue
        if node.children and parent is holder and len(node.children) > 1:
            continue
        index = parent.children.index(node)
        for child in node.children:
            child.parent = parent
        parent.children[index : index + 1] = node.children
    for root in holder.children:
        root.parent = None
    return holder.children


def _date_key(node: Node) -> tuple[float, int]:
    """Sent date and position; a dummy sorts by its first child (steps 4 and 6)."""
    while node.message is None and node.children:
        node = node.children[0]
    if node.message is None:
        return (0.0, 0)
    return (node.message.sent, node.message.position)


def _thread_subject(node: Node) -> str:
    if node.message is None and node.children:
        node = node.children[0]
    return "" if node.message is None else node.message.sort.base_subject


def _is_reply(node: Node) -> bool:
    return node.message is not None and node.message.sort.is_reply


def _merge_by_subject(roots: list[Node]) -> list[Node]:
    """Step 5: threads under the root with the same base subject are merged."""
    for root in roots:  # dummies at the top sort their children first (step 4)
        if root.message is None:
            root.children.sort(key=_date_key)
    table: dict[str, Node] = {}
    for root in roots:  # step 5.B
        subject = _thread_subject(root)
        if not subject:
            continue
        known = table.get(subject)
        if known is None or (
            known.message is not None
            and (root.message is None or (_is_reply(known) and not _is_reply(root)))
        ):
            table[subject] = root
    result = list(roots)
    for root in roots:  # step 5.C
        subject = _thread_subject(root)
        if not subject or table[subject] is root:
            continue
        known = table[subject]
        if known.message is None and root.message is None:
            for child in root.children:
                child.parent = known
            known.children.extend(root.children)
            result.remove(root)
        elif known.message is None or (_is_reply(root) and not _is_reply(known)):
            result.remove(root)
            root.parent = known
            known.children.append(root)
        else:
            dummy = Node()
            result[result.index(known)] = dummy
            result.remove(root)
            for child in (known, root):
                child.parent = dummy
                dummy.children.append(child)
            table[subject] = dummy
    return result


def _sort_siblings(roots: list[Node]) -> None:
    """Step 6: every set of siblings by sent date, the deepest first."""
    for node in _post_order(roots):
        node.children.sort(key=_date_key)
