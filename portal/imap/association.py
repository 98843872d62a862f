"""Who sent it and which company it belongs to: company / requester / known-sender lookups.

`associate` is the pure rule from the spec; `Directory` does the lookups, cached for one
sync run so a batch of mail from the same customers costs a few queries.
"""
from dataclasses import dataclass

from sqlalchemy import func, select

from ..models import CompanyDomain, Staff, User


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


class Directory:
    """Company domains, staff and users by address, cached for the length of one run."""

    def __init__(self, session):
        self.session = session
        self._domains: dict[str, int] | None = None
        self._staff: dict[str, list[tuple[int, int]]] = {}
        self._users: dict[str, int | None] = {}

    def company_for_domain(self, domain: str) -> int | None:
        if self._domains is None:
            rows = self.session.execute(select(CompanyDomain.domain, CompanyDomain.company_id))
            self._domains = {domain: company_id for domain, company_id in rows}
        return self._domains.get((domain or "").lower())

    def prefetch(self, addresses) -> None:
        """Load staff and users for many addresses in two queries."""
        wanted = {a.lower() for a in addresses if a} - set(self._users)
        if not wanted:
            return
        for address in wanted:
            self._staff[address] = []
            self._users[address] = None
        for chunk in _chunks(sorted(wanted), 500):
            for staff_id, company_id, email in self.session.execute(
                select(Staff.id, Staff.company_id, func.lower(Staff.email)).where(func.lower(Staff.email).in_(chunk))
            ):
                self._staff[email].append((staff_id, company_id))
            for user_id, email in self.session.execute(
                select(User.id, func.lower(User.email)).where(func.lower(User.email).in_(chunk))
            ):
                self._users[email] = user_id

    def staff_for(self, address: str) -> list[tuple[int, int]]:
        self.prefetch([address])
        return self._staff[address.lower()]

    def user_for(self, address: str) -> int | None:
        self.prefetch([address])
        return self._users[address.lower()]

    def is_known_sender(self, address: str) -> bool:
        """A portal user or a staff contact has this address (case-insensitive)."""
        if not address:
            return False
        return bool(self.staff_for(address)) or self.user_for(address) is not None

    def associate(self, address: str, mailbox_company_id: int | None) -> Association:
        address = (address or "").lower()
        domain = address.rpartition("@")[2] if "@" in address else ""
        if not address:
            return associate("", domain_company_id=None, mailbox_company_id=mailbox_company_id, staff=[], user_id=None)
        return associate(
            address,
            domain_company_id=self.company_for_domain(domain),
            mailbox_company_id=mailbox_company_id,
            staff=self.staff_for(address),
            user_id=self.user_for(address),
        )


def _chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]
