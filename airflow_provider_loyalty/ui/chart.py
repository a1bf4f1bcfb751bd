"""A small inline SVG chart of the window: one stacked bar per day (no JavaScript, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

#: Series drawn bottom-up: (field, CSS class, legend label).
SERIES = (
    ("succeeded", "bar-succeeded", "succeeded"),
    ("refused", "bar-permanent", "refused (permanent)"),
    ("invalid", "bar-invalid", "invalid input"),
    ("in_doubt", "bar-doubt", "in doubt"),
    ("not_sent", "bar-notsent", "not sent yet"),
    ("failed", "bar-transient", "still failing"),
    ("skipped", "bar-skipped", "skipped (already done)"),
)
WIDTH, HEIGHT, TOP, BOTTOM, LEFT, RIGHT = 720, 160, 12, 22, 48, 4
#: Pixels of one day's slot, at least and at most.
MIN_SLOT, MAX_SLOT = 6.0, 40.0


@dataclass
class DayBar:
    """The items of one day by state now (all vendors shown, or the one filtered on), and the skipped ones."""

    day: date
    succeeded: int = 0
    refused: int = 0
    invalid: int = 0
    in_doubt: int = 0
    not_sent: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        """Height of the bar."""
        return sum(getattr(self, field) for field, _, _ in SERIES)


def day_bars(first: date, last: date, counts: Sequence[object]) -> list[DayBar]:
    """One bar per day from ``first`` to ``last``, summing the vendors' :class:`DayCounts`-like rows.

    :param first: first day of the window.
    :param last: last day of the window (today).
    :param counts: objects with ``day`` and the fields of :data:`SERIES`.
    """
    bars = {first + timedelta(days=i): DayBar(first + timedelta(days=i)) for i in range((last - first).days + 1)}
    for row in counts:
        bar = bars.get(row.day)  # type: ignore[attr-defined]
        if bar is None:
            continue
        for field, _, _ in SERIES:
            setattr(bar, field, getattr(bar, field) + (getattr(row, field, 0) or 0))
    return list(bars.values())


def with_data(bars: Sequence[DayBar]) -> list[DayBar]:
    """The bars from the first day that has any count on (the days before it are empty: no axis for them)."""
    first = next((i for i, bar in enumerate(bars) if bar.total), len(bars))
    return list(bars[first:])


def nice_top(peak: int) -> int:
    """The axis maximum: the least of 1, 2, 2.5 or 5 times a power of ten that is at least ``peak`` (and 1)."""
    if peak <= 1:
        return 1
    power = 1
    while True:
        for step in (1, 2, 2.5, 5):
            top = step * power
            if top >= peak and float(top).is_integer():
                return int(top)
        power *= 10


def render_svg(bars: Sequence[DayBar]) -> str:
    """Return the chart as an SVG element (all text escaped; colours come from the page's CSS classes).

    The chart is as wide as its days need (a day's slot between :data:`MIN_SLOT` and :data:`MAX_SLOT`
    pixels, the whole at most :data:`WIDTH`) and its axis ends at a round number just above the
    tallest bar, so one day of data is one readable bar, not a sliver at the edge of a month.

    :param bars: the days, oldest first.
    """
    peak = max((bar.total for bar in bars), default=0)
    scale_top = nice_top(peak)
    plot_height = HEIGHT - TOP - BOTTOM
    slot = min(max((WIDTH - LEFT - RIGHT) / max(len(bars), 1), MIN_SLOT), MAX_SLOT)
    width = max(round(LEFT + slot * len(bars) + RIGHT), LEFT + 72) if bars else WIDTH
    bar_width = min(max(slot * 0.72, 1.0), 28.0)
    half = scale_top / 2
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" width="{width}" height="{HEIGHT}" role="img" '
        f'aria-label="Items per day, {len(bars)} days" xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{width}" y2="{HEIGHT - BOTTOM}"/>',
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{width}" y2="{TOP}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end" data-axis-top="{scale_top}">'
        f"{scale_top:,}</text>",
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_height / 2 + 4:.1f}" text-anchor="end">{int(half):,}</text>'
        if half.is_integer()
        else "",
        f'<text class="tick" x="{LEFT - 4}" y="{HEIGHT - BOTTOM}" text-anchor="end">0</text>',
    ]
    for index, bar in enumerate(bars):
        x = LEFT + index * slot + (slot - bar_width) / 2
        y = float(HEIGHT - BOTTOM)
        label = f"{bar.day.isoformat()}: " + ", ".join(
            f"{getattr(bar, field)} {name}" for field, _, name in SERIES if getattr(bar, field) or field == "succeeded"
        )
        parts.append(f'<g class="day" data-day="{bar.day.isoformat()}"><title>{escape(label)}</title>')
        parts.append(f'<rect class="hit" x="{x:.1f}" y="{TOP}" width="{bar_width:.1f}" height="{plot_height}"/>')
        for field, css, _ in SERIES:
            value = getattr(bar, field)
            if not value:
                continue
            height = plot_height * value / scale_top
            y -= height
            parts.append(f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" height="{height:.1f}"/>')
        parts.append("</g>")
    if len(bars) == 1:
        parts.append(f'<text class="tick" x="{LEFT}" y="{HEIGHT - 6}">{escape(bars[0].day.isoformat())}</text>')
    elif bars:
        parts.append(
            f'<text class="tick" x="{LEFT}" y="{HEIGHT - 6}">{escape(bars[0].day.isoformat())}</text>'
            f'<text class="tick" x="{width}" y="{HEIGHT - 6}" text-anchor="end">'
            f"{escape(bars[-1].day.isoformat())}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
