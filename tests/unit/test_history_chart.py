"""The last-30-days chart: pure SVG from daily counts (table-driven)."""
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from portal.imap import history_chart
from portal.imap.history_chart import HEIGHT, Day, build, window

SVG = "{http://www.w3.org/2000/svg}"
TODAY = date(2024, 5, 30)


def bars(svg: str) -> dict[tuple[str, str], float]:
    """(day, series) -> bar height, from the SVG itself."""
    root = ET.fromstring(svg)
    out = {}
    for rect in root.iter(f"{SVG}rect"):
        classes = rect.get("class").split()
        if "bar" in classes:
            out[(rect.get("data-day"), classes[1])] = float(rect.get("height"))
    return out


def column_titles(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g")]


CASES = [
    # name, rows (day offset from TODAY, imported, skipped, failed), expected heights {(offset, series): height}
    ("empty", [], {}),
    ("one day", [(0, 3, 1, 0)], {(0, "imported"): 75.0, (0, "skipped"): 25.0}),
    ("big numbers", [(2, 1_000_000, 0, 0), (1, 250_000, 250_000, 1)],
     {(2, "imported"): 100.0, (1, "imported"): 25.0, (1, "skipped"): 25.0, (1, "failed"): history_chart.MIN_BAR}),
    ("30 days", [(n, n + 1, 0, n % 2) for n in range(30)],  # the tallest: 30 imported + 1 failed
     {**{(n, "imported"): (n + 1) * 100 / 31 for n in range(30)},
      **{(n, "failed"): 100 / 31 for n in range(30) if n % 2}}),
    ("a sliver on the tallest day", [(0, 1000, 1, 0)], {(0, "imported"): 100 - history_chart.MIN_BAR, (0, "skipped"): history_chart.MIN_BAR}),
]


@pytest.mark.parametrize("name,rows,expected", CASES, ids=[c[0] for c in CASES])
def test_bar_heights_follow_the_counts(name, rows, expected):
    days = window([(TODAY - timedelta(days=o), i, s, f) for o, i, s, f in rows], TODAY)
    chart = build(days)
    root = ET.fromstring(chart.svg)  # well-formed XML
    assert root.get("viewBox") == f"0 0 {30 * history_chart.SLOT} {HEIGHT}" and root.get("width") == "100%"
    assert root.find(f"{SVG}title").text and root.find(f"{SVG}desc").text
    assert root.get("aria-labelledby") == "history-chart-title history-chart-desc" and root.get("role") == "img"
    got = bars(chart.svg)
    want = {((TODAY - timedelta(days=o)).isoformat(), key): h for (o, key), h in expected.items()}
    assert set(got) == set(want)
    for key, height in want.items():
        assert got[key] == pytest.approx(height, abs=0.01)
    assert len(column_titles(chart.svg)) == 30  # every day has its column, mail or not
    assert chart.first == TODAY - timedelta(days=29) and chart.last == TODAY


def test_a_stack_is_imported_then_skipped_then_failed_from_the_bottom():
    chart = build(window([(TODAY, 2, 1, 1)], TODAY))
    root = ET.fromstring(chart.svg)
    stack = {r.get("class").split()[1]: (float(r.get("y")), float(r.get("height")))
             for r in root.iter(f"{SVG}rect") if "bar" in r.get("class")}
    assert stack == {"imported": (50.0, 50.0), "skipped": (25.0, 25.0), "failed": (0.0, 25.0)}


def test_empty_window_says_so_and_draws_no_bar():
    chart = build(window([], TODAY))
    assert chart.tallest is None and chart.totals == {"imported": 0, "skipped": 0, "failed": 0}
    assert "No mail in this period" in ET.fromstring(chart.svg).find(f"{SVG}desc").text
    assert bars(chart.svg) == {}


def test_description_and_hover_titles_name_the_numbers():
    chart = build(window([(TODAY - timedelta(days=3), 1234, 5, 6), (TODAY, 1, 0, 0)], TODAY))
    desc = ET.fromstring(chart.svg).find(f"{SVG}desc").text
    assert desc == ("Messages per day from 2024-05-01 to 2024-05-30 (UTC): 1,235 imported, 5 skipped, 6 failed. "
                    "Busiest day 2024-05-27 with 1,245.")
    assert "2024-05-27: 1,234 imported, 5 skipped, 6 failed" in column_titles(chart.svg)
    assert "2024-05-28: 0 imported, 0 skipped, 0 failed" in column_titles(chart.svg)
    assert chart.tallest == Day(date(2024, 5, 27), 1234, 5, 6)


def test_window_fills_missing_days_and_ignores_rows_outside_it():
    days = window([(TODAY, 1, 2, 3), (TODAY - timedelta(days=30), 9, 9, 9), (TODAY + timedelta(days=1), 9, 9, 9)], TODAY)
    assert len(days) == 30 and days[-1] == Day(TODAY, 1, 2, 3)
    assert all(d.total == 0 for d in days[:-1])
    assert [d.day for d in days] == [TODAY - timedelta(days=n) for n in range(29, -1, -1)]


def test_chart_id_is_escaped():
    svg = build(window([], TODAY), chart_id='x"><script>').svg
    ET.fromstring(svg)
    assert "<script>" not in svg
