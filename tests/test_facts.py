"""Stream facts (HELLO meta, BYE stats) are structured values with documented bounds
(docs/protocol.md, "Facts"): a live stream with any number of clock jumps can say BYE."""

from __future__ import annotations

import pytest

from sendlearn.plugin.live.runner import BridgeStats
from sendlearn.transport.decode import decode_frame
from sendlearn.transport.encode import encode_frame
from sendlearn.transport.errors import InvalidMessage
from sendlearn.transport.messages import MAX_FACT_VALUES, Bye, Hello


def stats_with(origins: int) -> BridgeStats:
    pairs = tuple((k * 128, (1_000_000 + k * 131) & 0xFFFFFFFF) for k in range(origins))
    return BridgeStats(seconds=1.0, blocks=origins, dropped=0, queued=0, midi_events=0, midi_dropped=0,
                       midi_rejected=0, virtual_events=0, virtual_dropped=0, virtual_late=0, xruns=origins,
                       frame_jumps=max(0, origins - 1), missed_frames=0, callback_errors=0, capture_errors=0, playheads_held=0,
                       callback_p50_us=1.0, callback_p99_us=2.0, callback_max_us=3.0, period_us=2666.7,
                       frame_origins=pairs)


@pytest.mark.parametrize("origins", [1, 14, 5000, 20_000])
def test_a_bye_with_many_clock_jumps_round_trips(origins: int) -> None:
    figures = stats_with(origins).closing_figures()
    bye = Bye(last_seq=origins, stats=tuple(sorted(figures.items())))
    back = decode_frame(encode_frame(bye))
    assert isinstance(back, Bye)
    got = dict(back.stats)
    assert got["jack_frame_origins"] == [[k * 128, 1_000_000 + k * 131] for k in range(origins)]
    assert got["jack_frame_origins_left_out"] == 0 and got["xruns"] == origins


def test_more_origins_than_a_bye_holds_are_counted_not_joined() -> None:
    figures = stats_with(30_000).closing_figures()
    assert len(figures["jack_frame_origins"]) == 20_000 and figures["jack_frame_origins_left_out"] == 10_000
    back = decode_frame(encode_frame(Bye(last_seq=1, stats=tuple(sorted(figures.items())))))
    assert len(dict(back.stats)["jack_frame_origins"]) == 20_000


def test_facts_are_bounded() -> None:
    too_many = [[k, k] for k in range(MAX_FACT_VALUES // 2)]  # each pair is three values
    with pytest.raises(InvalidMessage, match="more than"):
        Bye(last_seq=0, stats=(("origins", too_many),))
    with pytest.raises(InvalidMessage, match="levels at most"):
        Bye(last_seq=0, stats=(("deep", [[[[1]]]]),))
    with pytest.raises(InvalidMessage, match="keys are names"):
        Hello("s", "t", "", 48000, 2, 512, "jack", meta=(("lag", {"": 1}),))
    with pytest.raises(InvalidMessage, match="must be a number"):
        Hello("s", "t", "", 48000, 2, 512, "jack", meta=(("lag", float("nan")),))
    hello = Hello("s", "t", "", 48000, 2, 512, "jack", meta=(("lags", {"a": [1, 2.5, None, "x"]}),))
    assert decode_frame(encode_frame(hello)) == hello


def test_the_facts_budget_fits_what_a_receiver_decodes() -> None:
    """A BYE at the facts budget must get past the receiver's own bound on list items."""
    from sendlearn.transport.limits import Limits

    assert MAX_FACT_VALUES < Limits().max_list_items
