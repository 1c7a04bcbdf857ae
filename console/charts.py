"""Charts as server-side SVG: geometry computed here (per bar, never per member), drawn by
``templates/console/charts/``. No JavaScript, no third-party host.

Readable without colour: every series has a pattern as well as a colour (``PATTERNS``),
a legend names it in text, each bar carries its figure (a direct label, or a ``<title>``
where bars are too narrow for text), and every chart is followed by a table of the same
figures. The SVG is ``role="img"`` with a title and a description."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from math import ceil, log10

# Fill patterns by name: (colour, pattern kind). Kinds are drawn by charts/_patterns.html.
PATTERNS: dict[str, tuple[str, str]] = {
    "solid": ("#1d4ed8", "solid"),
    "hatch": ("#b45309", "hatch"),
    "dots": ("#047857", "dots"),
    "cross": ("#b91c1c", "cross"),
    "grid": ("#6b21a8", "grid"),
    "plain": ("#a1a1aa", "solid"),
}


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    pattern: str

    @property
    def colour(self) -> str:
        return PATTERNS[self.pattern][0]

    @property
    def kind(self) -> str:
        return PATTERNS[self.pattern][1]


@dataclass(frozen=True)
class Bar:
    series: Series
    value: int
    x: float
    y: float
    width: float
    height: float
    label: str  # what the bar says (its <title>, or the direct label)

    @property
    def end(self) -> float:
        return round(self.x + self.width, 2)


@dataclass(frozen=True)
class Tick:
    value: int
    at: float  # y (vertical charts) or x


@dataclass
class Chart:
    """What a chart template draws: a canvas, bars, axis ticks and labels, a legend."""

    id: str
    title: str
    description: str
    width: int
    height: int
    series: list[Series]
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    labels: list[tuple[float, float, str]] = field(default_factory=list)  # x, y, text
    plot: tuple[float, float, float, float] = (0, 0, 0, 0)  # left, top, width, height

    @property
    def patterns(self) -> list[Series]:
        return self.series


def nice_ceiling(value: int) -> int:
    """The axis's top: ``value`` rounded up to 1, 2, 2.5 or 5 times a power of ten."""
    if value <= 0:
        return 1
    power = 10 ** int(log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = ceil(step * power)
        if top >= value:
            return top
    return 10 * power


def _scaled(value: int, top: int, span: float) -> float:
    return round(value * span / top, 2) if top else 0.0


# --- Vertical bars per day -------------------------------------------------------------

DAY_WIDTH, DAY_HEIGHT = 760, 240
DAY_LEFT, DAY_TOP, DAY_BOTTOM, DAY_RIGHT = 48, 12, 28, 28  # room for the last date


def day_bars(
    *, id: str, title: str, days: Sequence[date], series: Sequence[Series], values: dict
) -> Chart:
    """Grouped bars, one group per day and one bar per series; ``values[key][i]`` is the
    figure of series ``key`` on ``days[i]``. The y axis starts at zero."""
    plot_w = DAY_WIDTH - DAY_LEFT - DAY_RIGHT
    plot_h = DAY_HEIGHT - DAY_TOP - DAY_BOTTOM
    top = nice_ceiling(max((v for s in series for v in values[s.key]), default=0))
    group = plot_w / max(len(days), 1)
    bar_w = round(group * 0.8 / max(len(series), 1), 2)
    totals = ", ".join(f"{sum(values[s.key]):,} {s.label.lower()}" for s in series)
    chart = Chart(
        id=id,
        title=title,
        description=f"{len(days)} days from {days[0]:%d %b} to {days[-1]:%d %b %Y}: {totals}."
        if days
        else "No days.",
        width=DAY_WIDTH,
        height=DAY_HEIGHT,
        series=list(series),
        plot=(DAY_LEFT, DAY_TOP, plot_w, plot_h),
    )
    for i, day in enumerate(days):
        left = DAY_LEFT + i * group + group * 0.1
        for j, s in enumerate(series):
            value = values[s.key][i]
            height = _scaled(value, top, plot_h)
            chart.bars.append(
                Bar(
                    series=s,
                    value=value,
                    x=round(left + j * bar_w, 2),
                    y=round(DAY_TOP + plot_h - height, 2),
                    width=bar_w,
                    height=height,
                    label=f"{day:%a %d %b}: {value:,} {s.label.lower()}",
                )
            )
        if i % 5 == 0 or i == len(days) - 1:
            chart.labels.append((round(left, 2), DAY_HEIGHT - 8, f"{day:%d %b}"))
    chart.ticks = [
        Tick(v, round(DAY_TOP + plot_h - _scaled(v, top, plot_h), 2)) for v in (0, top // 2, top)
    ]
    return chart


# --- Horizontal funnel -----------------------------------------------------------------

FUNNEL_WIDTH, FUNNEL_ROW = 760, 30
FUNNEL_LABEL, FUNNEL_VALUE = 170, 150


def funnel(*, id: str, title: str, steps: Sequence[tuple[str, int]]) -> Chart:
    """One horizontal bar per step, widths to the first (largest) step's scale, each
    labelled with its figure and its share of the first step."""
    first = steps[0][1] if steps else 0
    top = max([first, *(v for _, v in steps)]) or 1
    span = FUNNEL_WIDTH - FUNNEL_LABEL - FUNNEL_VALUE
    series = Series("funnel", "Members", "solid")
    chart = Chart(
        id=id,
        title=title,
        description="; ".join(f"{label}: {value:,}" for label, value in steps) + ".",
        width=FUNNEL_WIDTH,
        height=FUNNEL_ROW * len(steps) + 4,
        series=[series],
        plot=(FUNNEL_LABEL, 0, span, FUNNEL_ROW * len(steps)),
    )
    for i, (label, value) in enumerate(steps):
        share = f" ({value / first:.0%})" if first and i else ""
        y = i * FUNNEL_ROW + 4
        chart.bars.append(
            Bar(
                series=series,
                value=value,
                x=FUNNEL_LABEL,
                y=y,
                width=_scaled(value, top, span),
                height=FUNNEL_ROW - 10,
                label=f"{value:,}{share}",
            )
        )
        chart.labels.append((0, y + FUNNEL_ROW / 2, label))
    return chart


# --- Segmented progress bar ------------------------------------------------------------

PROGRESS_WIDTH, PROGRESS_HEIGHT = 600, 22


def segmented(*, id: str, title: str, segments: Sequence[tuple[Series, int]]) -> Chart:
    """One bar split into ``segments`` (series, count) side by side, widths by share of
    their sum; a segment of zero takes no room but stays in the legend."""
    total = sum(count for _, count in segments)
    chart = Chart(
        id=id,
        title=title,
        description="; ".join(f"{s.label}: {count:,}" for s, count in segments) + ".",
        width=PROGRESS_WIDTH,
        height=PROGRESS_HEIGHT,
        series=[s for s, _ in segments],
        plot=(0, 0, PROGRESS_WIDTH, PROGRESS_HEIGHT),
    )
    x = 0.0
    for s, count in segments:
        width = _scaled(count, total, PROGRESS_WIDTH)
        share = f" ({count / total:.0%})" if total else ""
        chart.bars.append(
            Bar(s, count, round(x, 2), 0, width, PROGRESS_HEIGHT, f"{s.label}: {count:,}{share}")
        )
        x += width
    return chart
