"""A peer's history as its page draws it (webui/history.py): uptime, flaps, and the chart."""
from __future__ import annotations

import re

from webui import history
from webui.drivers import ASKED_BACK, ASKED_DOWN, Transition

NOW = 1_800_000_000.0


def test_uptime_covers_what_was_watched_and_counts_flaps_not_disconnects():
    transitions = [(NOW - 2000, "down", "up", ""),
                   (NOW - 600, "up", "down", "peer not responding"),
                   (NOW - 300, "down", "up", ""),
                   (NOW - 100, "up", "down", "disconnected by the admin", ASKED_DOWN),
                   (NOW - 50, "down", "up", "")]
    up = history.uptime(transitions, NOW)
    assert up.span == 2000  # from the first thing recorded, not a day: before it is not known
    # the 50 s it was disconnected on purpose are left out: up 1650 s of the 1950 meant to be
    assert up.left_out == 50
    assert round(up.percent, 1) == round(100 * (1400 + 200 + 50) / 1950, 1)
    assert (up.flaps, up.drops) == (1, 2)


def test_the_admins_own_drops_are_not_flaps_and_only_down_on_purpose_is_left_out():
    transitions = [Transition(NOW - 1000, "down", "up"),
                   Transition(NOW - 900, "up", "down", "reauthenticated by the admin", ASKED_BACK),
                   Transition(NOW - 890, "down", "up"),  # 10 s to come back: counted as down
                   Transition(NOW - 800, "up", "ike-up", "child SA terminated by the admin",
                              ASKED_DOWN),
                   Transition(NOW - 700, "ike-up", "up"),  # 100 s down on purpose: left out
                   Transition(NOW - 600, "up", "connecting", "peer changed and reloaded",
                              ASKED_BACK),
                   Transition(NOW - 595, "connecting", "up"),
                   Transition(NOW - 100, "up", "down", "peer not responding")]
    up = history.uptime(transitions, NOW)
    assert (up.flaps, up.drops) == (1, 4), "only the drop no one asked for is a flap"
    assert up.left_out == 100
    assert round(up.percent, 3) == round(100 * (100 + 90 + 100 + 495) / 900, 3)


def test_down_on_purpose_all_along_has_no_percentage_but_is_known():
    up = history.uptime([Transition(NOW - 500, "up", "down", "disconnected by the admin",
                                    ASKED_DOWN)], NOW)
    assert up.percent is None and up.left_out == 500 and up.flaps == 0


def test_uptime_over_a_day_starts_a_day_ago_in_the_state_then():
    transitions = [(NOW - 2 * history.DAY, "down", "up", ""),
                   (NOW - history.DAY / 2, "up", "down", "dead peer")]
    up = history.uptime(transitions, NOW)
    assert up.span == history.DAY and up.percent == 50.0 and up.flaps == 1


def test_uptime_with_nothing_recorded_is_unknown():
    assert history.uptime([], NOW).percent is None


def test_rates_break_at_gaps_and_count_a_reset_counter_from_zero():
    samples = [(NOW - 240, 0, 0), (NOW - 180, 6000, 600), (NOW - 120, 500, 60),
               (NOW + 0, 800, 90)]  # 120 s without a sample: a gap, no line across it
    rates = history.rates(samples, NOW)
    assert rates[0] == (NOW - 180, 100.0, 10.0, 60)
    assert rates[1] == (NOW - 120, 500 / 60, 1.0, 60)
    assert len(rates) == 3 and rates[2] == (NOW, 300 / 120, 30 / 120, 120)


def test_a_gap_longer_than_the_samples_spacing_breaks_the_line():
    samples = [(NOW - 900, 0, 0), (NOW - 840, 60, 60), (NOW - 300, 120, 120), (NOW - 240, 180, 180)]
    chart = history.chart(samples, [], "up", NOW)
    assert chart.path_in.count("M") == 2, chart.path_in


def test_the_chart_shades_the_time_the_tunnel_was_down():
    transitions = [(NOW - 3000, "down", "up", ""), (NOW - 900, "up", "down", "dead peer"),
                   (NOW - 600, "down", "up", "")]
    samples = [(NOW - 60 * k, 1000 * (60 - k), 500 * (60 - k)) for k in range(60, -1, -1)]
    chart = history.chart(samples, transitions, "up", NOW)
    assert chart.down == ((NOW - 900, NOW - 600),)
    assert chart.down_rects == ((450.0, 50.0),)
    assert round(chart.peak_in, 3) == round(1000 / 60, 3) and chart.total_in == 60_000 and chart.samples == 60
    assert re.fullmatch(r"[ML0-9. ]+", chart.path_in + chart.path_out), "numbers only"


def test_a_tunnel_down_now_is_shaded_up_to_now():
    transitions = [(NOW - 400, "down", "up", ""), (NOW - 120, "up", "down", "dead peer")]
    assert history.chart([], transitions, "down", NOW).down == ((NOW - 120, NOW),)
