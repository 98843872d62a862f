"""The association rule from the spec (pure)."""
from portal.imap.association import Association, associate


def test_domain_match_links_company_and_its_staff_contact():
    result = associate("pat@acme.com", domain_company_id=1, mailbox_company_id=9, staff=[(5, 1)], user_id=None)
    assert result == Association(1, "staff", 5, "pat@acme.com")


def test_domain_match_ignores_a_contact_of_another_company():
    result = associate("pat@acme.com", domain_company_id=1, mailbox_company_id=None, staff=[(7, 2)], user_id=None)
    assert result == Association(1, "email", None, "pat@acme.com")


def test_domain_match_falls_back_to_portal_user():
    result = associate("pat@acme.com", domain_company_id=1, mailbox_company_id=None, staff=[], user_id=3)
    assert result == Association(1, "user", 3, "pat@acme.com")


def test_no_domain_match_uses_mailbox_company_and_prefers_its_staff():
    result = associate("pat@gmail.com", domain_company_id=None, mailbox_company_id=2, staff=[(7, 3), (8, 2)], user_id=4)
    assert result == Association(2, "staff", 8, "pat@gmail.com")


def test_no_domain_match_takes_any_staff_then_user():
    assert associate("pat@gmail.com", domain_company_id=None, mailbox_company_id=2, staff=[(9, 3)], user_id=4) == Association(2, "staff", 9, "pat@gmail.com")
    assert associate("pat@gmail.com", domain_company_id=None, mailbox_company_id=2, staff=[], user_id=4) == Association(2, "user", 4, "pat@gmail.com")


def test_unknown_sender_is_a_bare_address_without_company():
    assert associate("x@nowhere.org", domain_company_id=None, mailbox_company_id=None, staff=[], user_id=None) == Association(None, "email", None, "x@nowhere.org")


def test_no_sender_address():
    assert associate("", domain_company_id=None, mailbox_company_id=4, staff=[], user_id=None) == Association(4, None, None, None)
