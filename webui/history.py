"""A peer's history as its page shows it: the last transitions, uptime over a day, the flaps, and
the geometry of an inline SVG chart of its traffic over the last hour, drawn on the server (no
chart library, nothing for the browser to run; the markup is tunnel/_chart.html's). Pure functions of what the monitor keeps
(`IPsecService.history`, `IPsecService.counters`) and the time."""
from __future__ import annotations

from dataclasses import dataclass

from webui.drivers import ASKED_DOWN, Transition

DAY = 86400.0
HOUR = 3600.0
WIDTH, HEIGHT = 600, 120  # the chart's own units; it is stretched to the page's width
# Counter samples further apart than this did not see what happened between them (no page was
# open to make the monitor list SAs, or the tunnel was down): the line breaks there.
GAP = 150.0


@dataclass(frozen=True)
class Uptime:
    percent: float | None  # of the time it was meant to be up; None: nothing known, or never meant
    span: float  # seconds the figure covers (less than a day while the UI has watched less)
    flaps: int  # drops from up that nobody asked for
    drops: int  # every drop from up, the admin's own included
    left_out: float = 0.0  # seconds within `span` the admin had it down on purpose


def uptime(transitions, now: float, window: float = DAY) -> Uptime:
    """How much of the last `window` the tunnel was up, of the time it was meant to be up, as far
    as the transitions tell. A drop the admin asked for (Transition.asked) is not a flap; after
    one meant to stay down (Disconnect, Terminate) the time until the next change is left out,
    while the time a Reauthenticate or a reload takes to come back counts as down.

    `transitions` are Transitions (or their fields), oldest first. Before the first one the
    state is not known, so the figure covers from the first one (or the window's start) to now."""
    start = now - window
    known = [Transition(*t) for t in transitions if t[0] <= now]
    if not known:
        return Uptime(None, 0.0, 0, 0)
    begin = max(start, known[0].at)
    # the state in force at `begin`: the last transition before it, else the first's "from"
    current = known[0]._replace(new=known[0].old, asked="")
    for t in known:
        if t.at <= begin:
            current = t
    up = left_out = 0.0
    at_prev = begin
    for t in [*(t for t in known if t.at > begin), Transition(now, "", "")]:
        if current.new == "up":
            up += t.at - at_prev
        elif current.asked == ASKED_DOWN:
            left_out += t.at - at_prev
        current, at_prev = t, t.at
    span = now - begin
    meant = span - left_out
    drops = [t for t in known if t.at >= start and t.old == "up" and t.new != "up"]
    flaps = sum(1 for t in drops if not t.asked)
    return Uptime(100.0 * up / meant if meant > 0 else None, span, flaps, len(drops), left_out)
@dataclass(frozen=True)
class Chart:
    """The chart in its own units (WIDTH x HEIGHT, y downwards): numbers only."""

    width: int
    height: int
    path_in: str  # an SVG path ("M x y L x y ..."), "" when there is nothing to draw
    path_out: str
    grid_y: float  # the line at half the peak
    down_rects: tuple[tuple[float, float], ...]  # (x, width) of each span the tunnel was not up
    peak_in: float  # bytes a second
    peak_out: float
    total_in: int  # bytes over the hour, as far as the samples saw
    total_out: int
    samples: int
    down: tuple[tuple[float, float], ...]  # (from, to) wall times the tunnel was not up
    now: float = 0.0  # when it was drawn: a span that ends then is not over

    @property
    def down_listed(self) -> tuple[tuple[float, float], ...]:
        """The spans worth a line of text: a second or more (shorter ones are only shaded)."""
        return tuple((a, b) for a, b in self.down if b - a >= 1)


def rates(samples, now: float, span: float = HOUR) -> list[tuple[float, float, float, float] | None]:
    """(time, bytes in a second, out a second, seconds covered) between consecutive samples of
    the last `span`; None where the line breaks (samples too far apart). A counter that went
    down was reset (a new CHILD_SA after a reconnect): it counts from zero."""
    out: list = []
    previous = None
    for sample in samples:
        at, bytes_in, bytes_out = sample
        if previous is not None and at > now - span:
            gap = at - previous[0]
            if gap > GAP:
                out.append(None)
            elif gap > 0:
                d_in = bytes_in - previous[1] if bytes_in >= previous[1] else bytes_in
                d_out = bytes_out - previous[2] if bytes_out >= previous[2] else bytes_out
                out.append((at, d_in / gap, d_out / gap, gap))
        previous = sample
    return out


def down_spans(transitions, current: str, now: float, span: float = HOUR):
    """(from, to) wall times within the last `span` when the tunnel was known not to be up:
    from a transition to any other state until the next one to up (or now)."""
    spans = []
    opened = None
    for at, _frm, to, *_ in transitions:
        if to != "up" and opened is None:
            opened = at
        elif to == "up" and opened is not None:
            spans.append((opened, at))
            opened = None
    if opened is not None and current != "up":
        spans.append((opened, now))
    start = now - span
    return tuple((max(a, start), min(b, now)) for a, b in spans if b > start and a < now)


def chart(samples, transitions, current: str, now: float, span: float = HOUR) -> Chart:
    """The traffic of the last `span`, bytes in and out a second, with the times the tunnel was
    down to shade: the numbers tunnel/_history.html draws its SVG with."""
    points = rates(samples, now, span)
    real = [p for p in points if p is not None]
    peak_in = max((p[1] for p in real), default=0.0)
    peak_out = max((p[2] for p in real), default=0.0)
    top = max(peak_in, peak_out) or 1.0

    def x(at: float) -> float:
        return (at - (now - span)) / span * WIDTH

    def y(rate: float) -> float:
        return HEIGHT - 2 - rate / top * (HEIGHT - 6)

    down = down_spans(transitions, current, now, span)
    paths = []
    for index in (1, 2):
        d, pen = [], "M"
        for p in points:
            if p is None:
                pen = "M"
                continue
            # each rate holds from the sample before to this one: a step, not a slope
            d.append(f"{pen}{x(p[0] - p[3]):.1f} {y(p[index]):.1f}L{x(p[0]):.1f} {y(p[index]):.1f}")
            pen = "L"
        paths.append(" ".join(d))
    total_in = sum(p[1] * p[3] for p in real)
    total_out = sum(p[2] * p[3] for p in real)
    rects = tuple((round(x(a), 1), round(max(x(b) - x(a), 1.0), 1)) for a, b in down)
    return Chart(WIDTH, HEIGHT, paths[0], paths[1], round(y(top / 2), 1), rects, peak_in,
                 peak_out, int(total_in), int(total_out), len(real), down, now)
