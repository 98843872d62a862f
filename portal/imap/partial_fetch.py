"""Mail above IMAP_MAX_MESSAGE_BYTES, downloaded by its parts.

`plan_large` reads the BODYSTRUCTURE of each message over the limit and plans it
(bodystructure.plan): its text and the attachments that fit are downloaded, the rest stays on
the server; a message whose text alone is over the limit (or whose structure cannot be read)
is set aside as `skipped_too_large`. `download` then fetches a planned message section by
section with BODY.PEEK (the header, then each part's MIME header and body), every literal
capped at what the plan still allows, and assembles a message the normal parser reads. The
note on the ticket and the audit's reason say what was left on the server.
See docs/architecture.md, "Mail above IMAP_MAX_MESSAGE_BYTES".
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .bodystructure import BodyStructureError, Plan, TextTooLarge, assemble, parse, plan
from .client import FetchedMessage, ImapSession, MessageInfo
from .client_limits import literal_limit_for
from .client_wire import chunks, section_key

STRUCTURES_PER_FETCH = 100


class PartsNotAsAnnounced(Exception):
    """The server sent parts larger than its BODYSTRUCTURE said, or left one out."""


@dataclass
class Planned:
    """A message over the limit, with the parts to download. Travels through the batches
    like a MessageInfo (alone in its batch)."""

    uid: int
    flags: tuple[str, ...]
    size: int  # RFC822.SIZE, the whole message
    plan: Plan


@dataclass
class PartialMessage(FetchedMessage):
    """A planned message as downloaded: ``raw`` holds its text and the attachments that fit."""

    notes: list[str] = field(default_factory=list)  # said on the ticket (InboundEmail.left_out)
    reason: str = ""  # said in the audit when it is imported
    error: Exception | None = None  # the download went wrong: the message is recorded as failed


def plan_large(session: ImapSession, infos: list[MessageInfo], limit: int) -> tuple[list[Planned], list[tuple[MessageInfo, str]]]:
    """The BODYSTRUCTURE of each message and its plan; returns the planned messages and the
    ones that stay skipped, each with its reason. Messages gone from the folder are in neither."""
    planned, skipped = [], []
    for batch in chunks(infos, STRUCTURES_PER_FETCH):
        answers = session.fetch_items([info.uid for info in batch], "(UID BODYSTRUCTURE)")
        for info in batch:
            item = answers.get(info.uid)
            if item is None:
                continue  # expunged meanwhile: not recorded, nothing lost if it reappears
            over = f"Message is {info.size:,} bytes, over the limit (IMAP_MAX_MESSAGE_BYTES) of {limit:,}"
            try:
                if item.structure is None:
                    raise BodyStructureError("the server sent none")
                planned.append(Planned(info.uid, tuple(info.flags), info.size, plan(parse(item.structure), info.size, limit)))
            except TextTooLarge as exc:
                skipped.append((info, f"{over}, and {exc}"))
            except BodyStructureError as exc:
                skipped.append((info, f"{over}, and its structure (BODYSTRUCTURE) could not be read: {exc}"))
    return planned, skipped


def download(session: ImapSession, message: Planned, limit: int) -> PartialMessage | None:
    """The planned parts of one message, assembled; None when it is gone from the folder.
    Holds at most what the plan allows (with the slack every literal gets) and never reads a
    literal above what is left of that."""
    allowance = literal_limit_for(limit)
    uid = message.uid
    answer = session.fetch_items([uid], "(UID BODY.PEEK[HEADER])", max_literal_bytes=allowance)
    header = answer[uid].sections.get("HEADER") if uid in answer else None
    if header is None:
        return None
    held = len(header)
    sections: dict[str, tuple[bytes, bytes]] = {}
    try:
        for part in message.plan.fetch:
            left = allowance - held
            if left <= 0:
                raise PartsNotAsAnnounced("the parts sent are larger than the BODYSTRUCTURE said")
            answer = session.fetch_items(
                [uid], f"(UID BODY.PEEK[{part.section}.MIME] BODY.PEEK[{part.section}])",
                max_literal_bytes=min(left, literal_limit_for(part.size)))
            if uid not in answer:
                return None
            got = answer[uid].sections
            mime, body = got.get(section_key(part.section + ".MIME")), got.get(section_key(part.section))
            if body is None:
                raise PartsNotAsAnnounced(f"the server sent no part {part.section}")
            held += len(mime or b"") + len(body)
            if held > allowance:
                raise PartsNotAsAnnounced("the parts sent are larger than the BODYSTRUCTURE said")
            sections[part.section] = (mime or b"", body)
        raw = assemble(message.plan, header, sections)
    except (PartsNotAsAnnounced, BodyStructureError) as exc:  # connection problems end the run, as for any FETCH
        return PartialMessage(uid, message.flags, message.size, b"", error=exc)
    finally:
        sections.clear()
    return PartialMessage(uid, message.flags, message.size, raw, message.plan.notes(), message.plan.reason(message.size, limit))
