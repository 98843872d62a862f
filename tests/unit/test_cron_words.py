import pytest

from portal.imap.cron_words import describe


@pytest.mark.parametrize(
    "expression,words",
    [
        ("* * * * *", "every minute"),
        ("*/15 * * * *", "every 15 minutes"),
        ("*/1 * * * *", "every minute"),
        ("5 * * * *", "every hour at :05"),
        ("0 */2 * * *", "every 2 hours at :00"),
        ("30 9 * * *", "every day at 09:30 UTC"),
        ("0 8,17 * * 1-5", "on weekdays at 08:00, 17:00 UTC"),
        ("*/10 * * * MON-FRI", "every 10 minutes on weekdays"),
        ("0 6 * * 1", "on Monday at 06:00 UTC"),
        ("0 0 1 * *", "cron 0 0 1 * *"),
        ("bogus", "bogus"),
    ],
)
def test_describe(expression, words):
    assert describe(expression) == words
