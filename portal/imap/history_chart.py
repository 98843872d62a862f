"""The detail page's "last 30 days" chart: stacked bars of imported / skipped / failed per day,
built as an SVG string from daily counts (pure: no Flask, no database).

The SVG holds only shapes: it stretches to the card's width (viewBox, preserveAspectRatio none,
a fixed CSS height), so bars stay readable at 390 px; the words (legend with totals, first and
last day, the tallest bar) are HTML beside it, at the page's own font size. Every day has a
slot, so a day without mail shows as an empty column; hovering a column names its numbers."""
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

DAYS = 30
SLOT = 10  # viewBox units per day
BAR = 7  # bar width inside its slot
HEIGHT = 100  # viewBox units of the tallest bar
MIN_BAR = 2.5  # the least height of a non-zero count (about 3 px at the page's chart height)
# (key, label, colour), bottom of the stack first.
SERIES = (
    ("imported", "Imported", "#127a46"),
    ("skipped", "Skipped", "#98a2b3"),
    ("failed", "Failed", "#b42318"),
)


@dataclass(frozen=True)
class Day:
    day: date
    imported: int = 0
    skipped: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.imported + self.skipped + self.failed


@dataclass(frozen=True)
class Chart:
    svg: str
    days: tuple[Day, ...]
    totals: dict  # key -> messages over the whole window
    tallest: Day | None  # the busiest day, None when the window is empty
    series = SERIES  # for the legend

    @property
    def first(self) -> date:
        return self.days[0].day

    @property
    def last(self) -> date:
        return self.days[-1].day


def window(rows, today: date, days: int = DAYS) -> list[Day]:
    """One Day per calendar day, oldest first, ending with `today`; days without a row are zero.
    `rows` are (day, imported, skipped, failed); rows outside the window are ignored."""
    by_day = {row[0]: row for row in rows}
    out = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        row = by_day.get(day)
        out.append(Day(day, *(int(n or 0) for n in row[1:4])) if row else Day(day))
    return out


def _segments(d: Day, scale: float) -> list[tuple[str, str, float]]:
    """(key, colour, height) of a day's non-zero series, bottom first. A count too small to see
    still gets MIN_BAR (one failed message among a million stays visible); the tallest segment
    gives back what that adds beyond the plot."""
    parts = [[key, colour, max(getattr(d, key) * scale, MIN_BAR)] for key, _, colour in SERIES if getattr(d, key)]
    excess = sum(p[2] for p in parts) - HEIGHT
    if excess > 0:
        max(parts, key=lambda p: p[2])[2] -= excess
    return [tuple(p) for p in parts]


def _number(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text if text != "-0" else "0"


def _day_text(d: Day) -> str:
    return f"{d.day.isoformat()}: {d.imported:,} imported, {d.skipped:,} skipped, {d.failed:,} failed"


def build(days: list[Day], chart_id: str = "history-chart") -> Chart:
    """The chart of `days` (oldest first, one per day, as window() gives them)."""
    days = tuple(days)
    totals = {key: sum(getattr(d, key) for d in days) for key, _, _ in SERIES}
    tallest = max(days, key=lambda d: (d.total, d.day), default=None)
    if tallest is not None and tallest.total == 0:
        tallest = None
    scale = HEIGHT / tallest.total if tallest else 0
    width = SLOT * max(len(days), 1)

    columns = []
    for index, d in enumerate(days):
        x = index * SLOT + (SLOT - BAR) / 2
        shapes = [f'<rect class="slot" x="{_number(index * SLOT)}" y="0" width="{SLOT}" height="{HEIGHT}" fill="transparent"/>']
        top = HEIGHT
        for key, colour, height in _segments(d, scale):
            count = getattr(d, key)
            top -= height
            shapes.append(
                f'<rect class="bar {key}" data-day="{d.day.isoformat()}" data-count="{count}" x="{_number(x)}" '
                f'y="{_number(top)}" width="{BAR}" height="{_number(height)}" fill="{colour}"/>'
            )
        columns.append(f'<g><title>{escape(_day_text(d))}</title>{"".join(shapes)}</g>')

    if days:
        summary = (
            f"Messages per day from {days[0].day.isoformat()} to {days[-1].day.isoformat()} (UTC): "
            + ", ".join(f"{totals[key]:,} {label.lower()}" for key, label, _ in SERIES)
            + (f". Busiest day {tallest.day.isoformat()} with {tallest.total:,}." if tallest else ". No mail in this period.")
        )
    else:
        summary = "No days to show."
    cid = escape(chart_id, quote=True)
    svg = (
        f'<svg id="{cid}" class="history-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {HEIGHT}" '
        f'width="100%" preserveAspectRatio="none" role="img" aria-labelledby="{cid}-title {cid}-desc">'
        f'<title id="{cid}-title">Imported, skipped and failed messages per day</title>'
        f'<desc id="{cid}-desc">{escape(summary)}</desc>'
        f'<line class="baseline" x1="0" y1="{HEIGHT}" x2="{width}" y2="{HEIGHT}" stroke="#c6ccd8" '
        f'stroke-width="1" vector-effect="non-scaling-stroke"/>'
        + "".join(columns)
        + "</svg>"
    )
    return Chart(svg=svg, days=days, totals=totals, tallest=tallest)
