"""Who sent it and which company it belongs to (pure: no database, no IO).

`associate` is the rule from the spec; `Directory` holds what a run has looked up about
senders (`ledger.load_senders` fills it a batch at a time); `Directory.may_write_into` is who
may add to a stored ticket by naming it (`[#id]`) in a subject.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Association:
    company_id: int | None
    requester_type: str | None  # "staff" | "user" | "email" | None
    requester_id: int | None
    requester_email: str | None


def associate(
    address: str,
    *,
    domain_company_id: int | None,
    mailbox_company_id: int | None,
    staff: list[tuple[int, int]],
    user_id: int | None,
) -> Association:
    """The ticket's company and requester.

    staff: (staff_id, company_id) of every contact with this address. A domain match
    links that company, and its contact with this address is the requester. With no
    domain match the mailbox's company is used and the requester is still looked up by
    address: a contact (preferring the mailbox's company), then a portal user. Otherwise
    the requester is the bare address.
    """
    if not address:
        return Association(domain_company_id or mailbox_company_id, None, None, None)
    if domain_company_id is not None:
        company_id = domain_company_id
        preferred = [s for s in staff if s[1] == domain_company_id]
        candidates = preferred
    else:
        company_id = mailbox_company_id
        preferred = [s for s in staff if mailbox_company_id is not None and s[1] == mailbox_company_id]
        candidates = preferred or sorted(staff)
    if candidates:
        return Association(company_id, "staff", candidates[0][0], address)
    if user_id is not None:
        return Association(company_id, "user", user_id, address)
    return Association(company_id, "email", None, address)


@dataclass(frozen=True)
class TicketParties:
    """Whom a stored ticket belongs to: what deciding who may write into it needs."""

    company_id: int | None
    requester_email: str | None
    requester_user_id: int | None
    requester_staff_id: int | None


class Directory:
    """Company domains, staff contacts and portal users by address: plain data, filled for a
    run by `ledger.load_senders` before a batch is decided, so asking it does no IO."""

    def __init__(self, domains: dict[str, int] | None = None):
        self.domains = domains  # domain -> company id; None until loaded
        self.staff: dict[str, list[tuple[int, int]]] = {}  # address -> [(staff id, company id)]
        self.users: dict[str, int | None] = {}  # address -> portal user id

    def missing(self, addresses) -> set[str]:
        """The addresses (lower case) this directory has not been told about yet."""
        return {a.lower() for a in addresses if a} - self.users.keys()

    def add(self, address: str, staff: list[tuple[int, int]], user_id: int | None) -> None:
        self.staff[address] = staff
        self.users[address] = user_id

    def is_known_sender(self, address: str) -> bool:
        """A portal user or a staff contact has this address (case-insensitive)."""
        address = (address or "").lower()
        return bool(self.staff.get(address)) or self.users.get(address) is not None

    def associate(self, address: str, mailbox_company_id: int | None) -> Association:
        address = (address or "").lower()
        domain = address.rpartition("@")[2] if "@" in address else ""
        return associate(
            address,
            domain_company_id=(self.domains or {}).get(domain) if address else None,
            mailbox_company_id=mailbox_company_id,
            staff=self.staff.get(address, []),
            user_id=self.users.get(address),
        )

    def may_write_into(self, address: str, ticket: TicketParties) -> bool:
        """The sender is the ticket's requester (by address, portal user or staff contact) or
        a staff contact of the ticket's company. Portal users belong to no company in this
        schema, so a user may write into a ticket only as its requester."""
        address = (address or "").lower()
        if not address:
            return False
        if ticket.requester_email and ticket.requester_email.lower() == address:
            return True
        user_id = self.users.get(address)
        if user_id is not None and user_id == ticket.requester_user_id:
            return True
        return any(
            staff_id == ticket.requester_staff_id or (ticket.company_id is not None and company_id == ticket.company_id)
            for staff_id, company_id in self.staff.get(address, [])
        )
