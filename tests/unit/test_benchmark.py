"""The benchmark's pure helpers, and what it reads from the app's fragments (the benchmark
itself is not a test: `./dev bench`)."""
import pytest

from tests import benchmark
from tests.benchmark import BY_HAND, by_hand, cacheable, page_assets, percentile


@pytest.mark.parametrize("p, expected", [(50, 5), (95, 10), (100, 10), (1, 1), (0, 1)])
def test_percentile_is_nearest_rank(p, expected):
    assert percentile([10, 1, 9, 2, 8, 3, 7, 4, 6, 5], p) == expected


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_page_assets_are_what_a_browser_fetches_once_each_in_order():
    page = """<html><head>
    <link rel="stylesheet" href="/static/style.css?v=1">
    <link rel="canonical" href="/elsewhere">
    <script src="/static/htmx.min.js?v=2" defer></script>
    <script>inline()</script>
    <link rel="icon" href="/static/favicon.svg"><link rel="icon" href="data:,">
    </head><body><img src="data:image/png;base64,AA"><img src="/static/logo.png">
    <script src="/static/htmx.min.js?v=2"></script></body></html>"""
    assert page_assets(page) == ["/static/style.css?v=1", "/static/htmx.min.js?v=2",
                                 "/static/favicon.svg", "/static/logo.png"]


@pytest.mark.parametrize("value, expected", [
    ("public, max-age=31536000", True), ("no-store", False), ("max-age=0", False),
    ("no-cache, max-age=600", False), ("", False)])
def test_cacheable_means_reused_without_asking(value, expected):
    assert cacheable({"cache-control": value}) is expected


def test_a_run_keeps_the_hand_written_part_of_the_report(tmp_path):
    report = tmp_path / "PERFORMANCE.md"
    assert by_hand(report) == ""
    report.write_text("# Performance\n\n| table |\n")
    assert by_hand(report) == ""
    report.write_text(f"# Performance\n\n| old table |\n\n{BY_HAND}\n\nnft: 55 ms\n\n"
                      "The whole benchmark took 59 s.\n")
    assert by_hand(report) == f"\n{BY_HAND}\n\nnft: 55 ms\n"


@pytest.mark.parametrize("path, pattern", [("/peers/states", benchmark.STATES_KEY),
                                           ("/commands/status", benchmark.PANE_KEY)])
def test_an_open_page_s_polls_find_the_version_the_app_renders(browser, path, pattern):
    """What the benchmark's open page sends back is the version the fragment carries: without it
    every poll would render, and the idle budgets would measure something else."""
    found = pattern.search(browser.get(path, htmx=True).get_data(as_text=True))
    assert found and found.group(1)
    assert browser.get(f"{path}?v={found.group(1)}", htmx=True).status_code == 204
