"""The console's SVG charts: bars are their figures to scale, segments share the bar by
their counts, every chart names itself for assistive technology and never relies on
colour alone (a pattern per series, a legend in words)."""

import re
from datetime import date, timedelta

from django.template.loader import render_to_string

from campaigns.models import UNFINISHED_STATUSES, DeliveryStatus
from console.charts import PATTERNS, Series, day_bars, funnel, nice_ceiling, segmented

A = Series("a", "Apples", "solid")
B = Series("b", "Bananas", "hatch")


def test_the_axis_top_is_a_round_number_at_or_above_the_largest_figure():
    assert [nice_ceiling(v) for v in (0, 1, 7, 12, 26, 180, 999, 1001)] == [
        1, 1, 10, 20, 50, 200, 1000, 2000
    ]  # fmt: skip


def test_day_bars_are_their_figures_to_scale():
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(3)]
    chart = day_bars(
        id="c", title="t", days=days, series=[A, B], values={"a": [5, 0, 10], "b": [2, 8, 1]}
    )
    _left, top, _width, plot_h = chart.plot
    assert [b.value for b in chart.bars] == [5, 2, 0, 8, 10, 1]
    for bar in chart.bars:
        assert abs(bar.height - bar.value * plot_h / 10) < 0.01
        assert abs(bar.y + bar.height - (top + plot_h)) < 0.01  # every bar stands on the axis
    assert [t.value for t in chart.ticks] == [0, 5, 10]
    assert chart.description == "3 days from 01 Nov to 03 Nov 2026: 15 apples, 11 bananas."


def test_funnel_widths_are_shares_of_the_largest_step():
    chart = funnel(id="f", title="t", steps=[("Targeted", 200), ("Sent", 150), ("Opened", 0)])
    span = chart.plot[2]
    assert [b.width for b in chart.bars] == [span, span * 0.75, 0]
    assert [b.label for b in chart.bars] == ["200", "150 (75%)", "0 (0%)"]


def test_segments_share_the_bar_by_their_counts():
    chart = segmented(id="p", title="t", segments=[(A, 3), (B, 1), (Series("c", "C", "dots"), 0)])
    assert [b.width for b in chart.bars] == [450.0, 150.0, 0.0]
    assert [b.x for b in chart.bars] == [0, 450.0, 600.0]
    assert chart.bars[0].label == "Apples: 3 (75%)"


def test_an_empty_chart_draws_nothing_and_divides_by_nothing():
    assert [b.width for b in segmented(id="p", title="t", segments=[(A, 0)]).bars] == [0.0]
    chart = day_bars(id="c", title="t", days=[date(2026, 1, 1)], series=[A], values={"a": [0]})
    assert chart.bars[0].height == 0


def test_rendered_charts_are_labelled_images_with_patterns_and_a_legend():
    days = [date(2026, 11, 1), date(2026, 11, 2)]
    chart = day_bars(
        id="c", title="Fruit per day", days=days, series=[A, B], values={"a": [1, 2], "b": [3, 4]}
    )
    html = render_to_string("console/charts/day_bars.html", {"chart": chart})
    assert 'role="img" aria-labelledby="c-title c-desc"' in html
    assert '<title id="c-title">Fruit per day</title>' in html
    assert '<pattern id="c-a"' in html and '<pattern id="c-b"' in html
    # The hatched series is drawn with lines, not only a colour.
    hatch = html[
        html.index('<pattern id="c-b"') : html.index("</pattern>", html.index('<pattern id="c-b"'))
    ]
    assert "<path" in hatch and PATTERNS["hatch"][0] in hatch
    assert re.findall(r'fill="url\(#c-(\w)\)"', html).count("a") >= 2
    assert "Apples</li>" in html and "Bananas</li>" in html
    assert "<title>Sun 01 Nov: 1 apples</title>" in html
    assert "style=" not in html and "<script" not in html


def test_every_delivery_status_is_in_exactly_one_progress_segment():
    from console.selectors import PROGRESS_SEGMENTS

    statuses = [s for group in PROGRESS_SEGMENTS.values() for s in group]
    assert sorted(statuses) == sorted(DeliveryStatus)
    assert set(PROGRESS_SEGMENTS["to_send", "Still to send"]) == set(UNFINISHED_STATUSES)
