"""The replay bench's pure parts (bench/replay.py): the time order it replays and the chart it writes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from bench.replay import chart_svg, ordered


def test_calendar_order_rebuilds_the_months_from_the_price_index():
    frame = pd.DataFrame({"cons.price.idx": [94.767, 93.994, 92.893, 93.994],
                          "month": ["nov", "may", "may", "may"], "age": [1, 2, 3, 4]})
    # 2010-11, 2008-05, 2009-05, 2008-05 -> the two 2008-05 rows first (in file order), then 2009-05, 2010-11
    assert ordered(frame, "calendar")["age"].tolist() == [2, 4, 3, 1]


def test_file_and_column_orders():
    frame = pd.DataFrame({"when": [3, 1, 2], "age": [30, 10, 20]})
    assert ordered(frame, "file")["age"].tolist() == [30, 10, 20]
    assert ordered(frame, "column:when")["age"].tolist() == [10, 20, 30]
    with pytest.raises(SystemExit, match="no column 'nope'"):
        ordered(frame, "column:nope")
    with pytest.raises(SystemExit, match="calendar, file or column:NAME"):
        ordered(frame, "random")


def test_the_chart_is_one_svg_with_a_line_per_policy(tmp_path):
    rows = [{"period": k, "ours_auc": 0.8 + k / 100, "static_auc": 0.8, "lightgbm_auc": 0.79 + k / 200}
            for k in range(5, 11)]
    path = tmp_path / "replay.svg"
    chart_svg(rows, path)
    root = ET.parse(path).getroot()  # noqa: S314 - the file this test just wrote
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 3 and all(len(line.get("points").split()) == len(rows) for line in lines)
    assert "(0.875)" in path.read_text()  # the legend carries each policy's mean
