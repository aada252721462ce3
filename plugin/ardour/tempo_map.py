"""Every period's playhead from Ardour's own tempo map, asked before the roll.

Ardour 7.3, as JACK's timebase master, publishes the tempo and meter in force where the roll
began and bar and beat counted on from there: a tempo or meter change later in the session never
reaches JACK (fixed in Ardour 7.5), so a playhead read from JACK is wrong after it. Ardour's map,
read through its Lua before the roll at the first sample of every period of the range, is right
everywhere: tempo in quarter notes a minute, the meter, bar and beat (in the meter's note value),
and the position in quarter notes from the session's zero. Ardour counts a BBT's ticks, and
prints a position's, in whole 1920ths of a quarter note, so beat and ``ppq`` are to that tick, as
JACK's BBT was. One Lua loop prints a line a period (10 minutes at period 1024: 28,000 lines).
"""

from __future__ import annotations

from sendlearn.capture import Playhead
from sendlearn.plugin.ardour.headless import ArdourError, ArdourProcess

TICKS = 1920  # Temporal::ticks_per_beat: ticks of a quarter note, in a BBT and in Beats


def map_playheads(daw: ArdourProcess, first: int, last: int, period: int, rate: int) -> dict[int, Playhead]:
    """Ardour's playhead at ``first``, ``first + period``, … below ``last``, by session sample."""
    lines = daw.run(f"""
        local tm = Temporal.TempoMap.read()
        for s = {first}, {last - 1}, {period} do
            local t = Temporal.timepos_t(s)
            local meter, bbt = tm:meter_at(t), tm:bbt_at(t)
            print(string.format('map %d %.17g %d %d %d %d %d %s', s, tm:quarters_per_minute_at(t),
                meter:divisions_per_bar(), meter:note_value(), bbt.bars, bbt.beats, bbt.ticks,
                tostring(tm:quarters_at(t))))
        end
    """)
    heads: dict[int, Playhead] = {}
    for line in lines:
        if not line.startswith("map "):
            continue
        sample, bpm, num, den, bars, beats, ticks, quarters = line.split()[1:]
        whole, part = quarters.split(":")  # Temporal::Beats prints "beats:ticks"
        heads[int(sample)] = Playhead(
            seconds=int(sample) / rate, ppq=int(whole) + int(part) / TICKS, bpm=float(bpm), ts_num=int(num),
            ts_den=int(den), bar=int(bars), beat=int(beats) + int(ticks) / (TICKS * 4 / int(den)), playing=True)
    expected = len(range(first, last, period))
    if len(heads) != expected:  # a line lost on the way from Ardour: never guess a playhead
        raise ArdourError(f"Ardour's tempo map gave {len(heads)} of {expected} periods' playheads")
    return heads
