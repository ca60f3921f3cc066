"""What regtui makes of the daemon's JSON: diff sections, filter errors, numbers, key metrics, row strips."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from regd.errors import GuardFailed, InvalidParams, RegdError
from regtui.fmt import describe, filter_error, key_metric, metric_columns, number, size
from regtui.widgets.diff_view import render_value, section_text
from regtui.widgets.row_strip import Column, row_strip


def lines(value) -> list[str]:
    return [line.plain for line in render_value(value)]


def test_a_change_pair_is_one_line_with_its_delta_and_verdict():
    text = section_text({"items": [{"name": "auc", "a": 0.9, "b": 0.912, "delta": 0.012, "verdict": "better"}]})
    assert text.plain.splitlines() == ["  items:", "    auc: 0.9 → 0.912  (+0.012)  better"]
    styles = {str(span.style) for span in text.spans}
    assert "green" in styles and "red" in styles  # b in green, a in red


def test_added_removed_changed_are_marked_and_empty_entries_hidden():
    out = lines({"added": {"lr": 0.1}, "removed": ["dropout"], "changed": [{"key": "epochs", "a": 3, "b": 5}],
                 "unchanged": 4, "renamed": []})  # fmt: skip
    assert out == ["+ added:", "  + lr: 0.1", "- removed:", "  - dropout", "~ changed:", "  ~ epochs: 3 → 5", "= unchanged: 4"]


def test_a_section_with_nothing_but_unchanged_counts_says_no_changes():
    assert lines({"added": {}, "removed": {}, "changed": [], "unchanged": 2}) == ["  no changes (unchanged 2)"]


def test_version_summaries_fold_to_one_line_and_digests_shorten():
    out = lines({"model": "fraud", "version": "1.2.0", "stage": "production", "digest": "ab" * 32, "size": 80})
    assert out == ["  fraud:1.2.0  stage production  digest abababababab…  size 80"]


def test_unknown_shapes_still_render():
    assert lines([1, "two", None, True]) == ["  1", "  two", "  —", "  yes"]
    assert lines({"nested": {"deeper": {"x": [{"y": 1, "z": 2}]}}}) == [
        "  nested:", "    deeper:", "      x:", "        • y: 1", "          z: 2",
    ]  # fmt: skip


def test_a_filter_error_points_into_the_users_text_not_regtuis_prefix():
    prefix = "name = 'fraud' and ("
    exc = InvalidParams("filter: unexpected '>' at column 34; expected a value",
                        {"filter": prefix + "metrics.auc >> 3)", "position": 33, "column": 34})  # fmt: skip
    message, column = filter_error(exc, len(prefix), "metrics.auc >> 3")
    assert column == 13 and message == "filter: unexpected '>' at column 14; expected a value"


def test_errors_read_as_sentences():
    assert describe(RegdError.from_error({"code": -32601, "message": "no method", "data": {"method": "lineage.get"}})) == (
        "lineage.get: not available in this daemon"
    )
    refused = GuardFailed("promotion refused", {"checks": [{"rule": "min auc", "passed": False, "detail": "0.8 < 0.9"},
                                                             {"rule": "transition", "passed": True}]})  # fmt: skip
    assert describe(refused) == "promotion refused\n✘ min auc: 0.8 < 0.9"
    pydantic = RegdError.from_error({"code": -32602, "message": "invalid params",
                                     "data": [{"loc": ["reason"], "msg": "String should have at least 1 character"}]})  # fmt: skip
    assert describe(pydantic) == "invalid params\nreason: String should have at least 1 character"


def test_numbers_metrics_and_sizes():
    assert [number(v) for v in (0.91, 1.0, 12, 0.00012, 123456789.5)] == ["0.91", "1", "12", "1.20e-04", "1.23e+08"]
    assert key_metric({"loss": 1, "zeta": 2, "AUC": 0.9}) == "AUC" and key_metric({"b": 1, "a": 2}) == "a"
    assert metric_columns({"loss": 1, "f1": 2, "auc": 3}, 2) == ["auc", "f1"]
    assert [size(n) for n in (80, 1_500, 4_000_000_000)] == ["80 B", "1.5 kB", "4.0 GB"]


def test_a_row_strip_truncates_with_an_ellipsis_and_pads_to_the_width():
    columns = [Column("version", 6), Column("auc", 5, "right")]
    strip = row_strip(columns, ["1.10000.0", Text("0.9", style="bold")], 20, Style(), None, mark="◆")
    assert strip.text == "◆ 1.100… " + "  0.9 " + "     " and strip.cell_length == 20
