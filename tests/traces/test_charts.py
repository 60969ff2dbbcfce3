"""Chart labels a reader can trust: an axis never repeats a tick label."""

import re

from traces import charts


def _y_ticks(svg: str) -> list[str]:
    return re.findall(r'<text class="axis" x="\d+" y="[\d.]+" text-anchor="end">([^<]*)</text>', svg)


def test_a_low_error_rate_axis_has_distinct_tick_labels():
    svg = str(charts.line_chart(["03:00", "04:00"], [("error rate", [0.4, 1.3])], title="Error rate", unit="%"))
    ticks = _y_ticks(svg)
    assert ticks == ["0%", "0.5%", "1%", "1.5%", "2%"]
    assert "1.3%" in svg  # the point's tooltip keeps its decimals too


def test_a_sub_one_percent_axis_keeps_quarter_ticks():
    ticks = _y_ticks(str(charts.line_chart(["a"], [("error rate", [0.4])], title="Error rate", unit="%")))
    assert ticks == ["0%", "0.25%", "0.5%", "0.75%", "1%"]
