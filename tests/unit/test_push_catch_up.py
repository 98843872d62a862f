"""When a new IDLE connection queues a catch-up sync: only when mail may have come unseen."""
import pytest

from portal.imap.client_wire import FolderState
from portal.imap.push import needs_catch_up


@pytest.mark.parametrize("folder, uid_validity, last_seen_uid, expected", [
    (FolderState(uidvalidity=7, uidnext=11, exists=10), 7, 10, False),  # nothing above the last recorded UID
    (FolderState(uidvalidity=7, uidnext=12, exists=11), 7, 10, True),  # a UID was handed out since
    (FolderState(uidvalidity=7, uidnext=1, exists=0), 7, 0, False),  # empty, synced
    (FolderState(uidvalidity=8, uidnext=11, exists=10), 7, 10, True),  # a new UID epoch
    (FolderState(uidvalidity=7, uidnext=11, exists=10), None, 0, True),  # never synced
    (FolderState(uidvalidity=7, uidnext=None, exists=10), 7, 10, True),  # no UIDNEXT: cannot tell
])
def test_catch_up_only_when_mail_may_have_come_unseen(folder, uid_validity, last_seen_uid, expected):
    assert needs_catch_up(folder, uid_validity, last_seen_uid) is expected
