"""A session's automation lanes, read from Ardour before the roll, as params rows of its streams.

Read through Ardour's Lua (the loaded copy, so what Ardour itself will play), not from the
session XML: Ardour resolves the lanes' time domains and plugin parameter numbering itself.
Per route: its fader (``gain_control()``, param ``<route>/gain``), trim (``<route>/trim``, a
linear factor like the fader's), mute (``<route>/mute``, 0 or 1), panner (``<route>/pan_azimuth``,
0 to 1 with 0.5 the centre, and ``<route>/pan_width`` where the panner has one) and every input
control of every plugin (``<route>/<plugin>/<parameter>``, the parameter as the plugin names it;
a plugin name met twice on a route gets `` (2)``, `` (3)``... so no two lanes share a name).
A MIDI track's MIDI CC lanes are not read: Ardour plays them as MIDI it sends, not as a control.

A lane counts when Ardour plays it back: automation state Play, Touch or Latch (nothing touches
a control headless, so those two play the lane as Play does). Off ignores the lane and Write
overwrites it with the control's value as the transport rolls, so neither is played and neither
is taken. Each point is taken as Ardour stores it: its time in samples (``timepos_t:samples()``:
Ardour's own tempo map converts a lane kept in beats, as 7.3 keeps plugin lanes on MIDI tracks),
its value in the control's own units (the fader's gain as a linear factor, 1.0 being 0 dB; a
plugin parameter in the plugin's units). Between points Ardour interpolates by the lane's style
(the fader's is exponential, a plugin's usually linear): the rows hold the points only, and the
style is a stream fact (``automation_interpolation``, pairs of lane and style).

A range that starts after a lane's first point (``--start``) would leave the value the lane holds
there to the points before it, which the stream does not have: such a lane gets one more row, at
stream sample 0, holding the value Ardour itself evaluates there (``ControlList::eval``, by the
lane's own interpolation), unless a point falls on that very sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from sendlearn.capture.block import MAX_PARAM_NAME
from sendlearn.plugin.ardour.headless import ArdourError, ArdourProcess

# Evoral::ControlList::InterpolationStyle (Ardour 7.3's evoral/ControlList.h)
INTERPOLATION = {0: "discrete", 1: "linear", 2: "curved", 3: "logarithmic", 4: "exponential"}
PLAYED = ("Play", "Touch", "Latch")  # ARDOUR.AutoState values whose lanes Ardour plays back


@dataclass(frozen=True)
class Lane:
    route: str
    param: str  # ``<route>/gain`` or ``<route>/<plugin>/<parameter>``
    interpolation: str
    points: tuple[tuple[int, float], ...]  # (session sample, value), in Ardour's order
    at_first: float  # the lane's value at the range's first sample, as Ardour evaluates it


def read_lanes(daw: ArdourProcess, route: str, first: int) -> list[Lane]:
    """The played lanes of ``route``, with every point Ardour holds (the range is cut later) and
    the value each holds at session sample ``first``."""
    name = '"' + route.replace("\\", "\\\\").replace('"', '\\"') + '"'  # a Lua string literal
    played = " or ".join(f"s == ARDOUR.AutoState.{state}" for state in PLAYED)
    # One line per lane and per point; a lane's name is printed last so it may hold spaces. (No
    # Lua comments: the chunk reaches Ardour as one line. A route without a panner has no pan lanes.)
    lines = daw.run(f"""
        local r = Session:route_by_name({name})
        assert(not r:isnil(), "no route " .. {name})
        local function lane(param, ac)
            local s = ac:automation_state()
            if not ({played}) then return end
            local al = ac:alist()
            print('lane ' .. al:interpolation() .. ' ' .. param)
            print('first ' .. string.format('%.17g', al:eval(Temporal.timepos_t({first}))))
            for e in al:events():iter() do
                print('point ' .. tostring(e.when:samples()) .. ' ' .. string.format('%.17g', e.value))
            end
        end
        lane('gain', r:gain_control())
        for _, c in ipairs({{{{'trim', r:trim_control()}}, {{'mute', r:mute_control()}},
                            {{'pan_azimuth', r:pan_azimuth_control()}}, {{'pan_width', r:pan_width_control()}}}}) do
            if c[2] and not c[2]:isnil() then lane(c[1], c[2]) end
        end
        local seen = {{}}
        local i = 0
        while true do
            local p = r:nth_plugin(i)
            if p:isnil() then break end
            local pi = p:to_insert()
            local pl = pi:plugin(0)
            local label = p:display_name()
            seen[label] = (seen[label] or 0) + 1
            if seen[label] > 1 then label = label .. ' (' .. seen[label] .. ')' end
            for j = 0, pl:parameter_count() - 1 do
                local id, refs = pl:nth_parameter(j, true)
                if refs[2] and pl:parameter_is_input(id) and pl:parameter_is_control(id) then
                    local ac = pi:to_automatable():automation_control(
                        Evoral.Parameter(ARDOUR.AutomationType.PluginAutomation, 0, id), false)
                    if not ac:isnil() then lane(label .. '/' .. ac:name(), ac) end
                end
            end
            i = i + 1
        end
    """)
    lanes: list[tuple[str, str, list[tuple[int, float]], list[float]]] = []
    for line in lines:
        if line.startswith("lane "):
            _, style, param = line.split(" ", 2)
            lanes.append((f"{route}/{param}", INTERPOLATION.get(int(style), f"style {style}"), [], []))
        elif line.startswith("point ") and lanes:
            _, sample, value = line.split()
            lanes[-1][2].append((int(sample), float(value)))
        elif line.startswith("first ") and lanes:
            lanes[-1][3].append(float(line.split()[1]))
    missing = [param for param, _, _, at_first in lanes if len(at_first) != 1]
    if missing:  # a line lost on the way from Ardour: never guess a value
        raise ArdourError(f"Ardour gave no value at sample {first} for the lanes {', '.join(missing)}")
    # a played lane without points plays nothing (Ardour plays every pan lane when one plays)
    return [Lane(route, param, style, tuple(points), at_first[0]) for param, style, points, at_first in lanes if points]


def range_points(lanes: list[Lane], first: int, last: int) -> list[tuple[int, str, float]]:
    """Every point in ``[first, last)`` as ``(stream sample, param, value)``, stream sample 0
    being ``first``; in sample order, a lane's points on one sample in Ardour's order. A lane
    with points before ``first`` and none on it starts with its value there (module docstring)."""
    points = [(0, lane.param, lane.at_first) for lane in lanes
              if any(sample < first for sample, _ in lane.points) and all(sample != first for sample, _ in lane.points)]
    points += [(sample - first, lane.param, value) for lane in lanes for sample, value in lane.points
               if first <= sample < last]
    return sorted(points, key=lambda point: point[0])


def too_long(lanes: list[Lane]) -> list[str]:
    """Lane names a params row cannot hold (capture.block's limit)."""
    return [lane.param for lane in lanes if len(lane.param) > MAX_PARAM_NAME]


def interpolation_fact(lanes: list[Lane]) -> tuple[str, list[list[str]]]:
    """The stream fact naming each lane's interpolation: ``[["synth/gain", "exponential"], ...]``
    (pairs, not a map: a fact's map keys hold 64 characters, a lane's name up to 128)."""
    return ("automation_interpolation", [[lane.param, lane.interpolation] for lane in lanes])
