"""Streaming text helpers: whole UTF-8 characters only, stop sequences never leaked."""

from __future__ import annotations

from locallab.engines.text import StopMatcher, Utf8Stream


def test_utf8_stream_holds_a_split_character_until_complete() -> None:
    data = "é🤖".encode()
    stream = Utf8Stream()
    outputs = [stream.feed(data[i : i + 1]) for i in range(len(data))]
    assert outputs == ["", "é", "", "", "", "🤖"]
    assert stream.flush() == ""


def test_utf8_stream_replaces_truly_invalid_bytes_instead_of_failing() -> None:
    stream = Utf8Stream()
    assert stream.feed(b"a\xffb") == "a\ufffdb"
    assert stream.feed(b"\xe2\x82") == ""
    assert stream.flush() == ""  # a character cut off at the end is dropped


def test_stop_matcher_holds_back_a_possible_stop_prefix() -> None:
    stops = StopMatcher(("</end>",))
    assert stops.feed("hello </") == ("hello ", False)
    assert stops.feed("en") == ("", False)
    assert stops.feed("d> more") == ("", True)


def test_stop_matcher_releases_text_that_turned_out_not_to_stop() -> None:
    stops = StopMatcher(("STOP",))
    assert stops.feed("ST") == ("", False)
    assert stops.feed("ORM") == ("STORM", False)
    assert stops.flush() == ""


def test_stop_matcher_cuts_at_the_earliest_of_several_stops() -> None:
    stops = StopMatcher(("bb", "a"))
    assert stops.feed("xxbbya") == ("xx", True)
    assert stops.matched == "bb"  # reported as Anthropic's stop_sequence


def test_stop_matcher_flush_returns_held_text_at_the_end() -> None:
    stops = StopMatcher(("\n\n",))
    assert stops.feed("line\n") == ("line", False)
    assert stops.flush() == "\n"


def test_no_stops_passes_everything() -> None:
    assert StopMatcher(()).feed("anything") == ("anything", False)
