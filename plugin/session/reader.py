"""Session files (``session.toml``, docs/session.md): tracks on one clock, each one a stream.

Loading validates everything that can be checked without rendering, and every failure is
a ``SessionError`` naming the file, the key (``track[1].instrument.voices``) and the
problem, so the command line can print it and exit 2.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sendlearn.capture import MAX_FRAMES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, InvalidName, check_name
from sendlearn.errors import UsageError
from sendlearn.plugin.session.instrument import (
    DEFAULT_INSTRUMENT,
    DEFAULT_VOICES,
    Instrument,
    faust_instrument,
    gm_instrument,
    parse_instrument,
    plugin_instrument,
    soundfont_instrument,
)
from sendlearn.plugin.session.tracks import (
    DEFAULT_BPM,
    Automation,
    Effect,
    Session,
    Track,
    dry_stream_name,
    effect_ids,
    gm_stream_name,
    track_streams,
    wet_stream_name,
)

__all__ = ["Automation", "Effect", "Session", "SessionError", "Track", "dry_stream_name", "effect_ids",
           "gm_stream_name", "load_session", "safe_name", "session_from_midi", "track_streams", "wet_stream_name"]

DEFAULT_SAMPLE_RATE = 48000
DEFAULT_BLOCK_SIZE = 512
UNITS = ("seconds", "beats")
GAIN_DB_RANGE = (-120.0, 24.0)
BPM_RANGE = (1.0, 960.0)
_EFFECT_ID = re.compile(r"^[A-Za-z0-9_#-]{1,32}$")
# pedalboard classes that host third-party code or containers: not "built-in effects".
_NOT_EFFECTS = {"Plugin", "Pedalboard", "Chain", "Mix", "ExternalPlugin", "VST3Plugin", "AudioUnitPlugin"}


class SessionError(UsageError, ValueError):
    """A session file that cannot be rendered: ``file``, ``key`` (may be empty) and ``problem``."""

    def __init__(self, file: str | Path, key: str, problem: str) -> None:
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + problem)
        self.file = str(file)
        self.key = key
        self.problem = problem


def load_session(path: str | Path, *, sample_rate: int | None = None, block_size: int | None = None) -> Session:
    """Read and validate a session file; ``sample_rate``/``block_size`` override the file's."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SessionError(path, "", "file not found") from None
    except OSError as exc:
        raise SessionError(path, "", f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SessionError(path, "", f"is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SessionError(path, "", "is not UTF-8 text") from None
    return _Reader(path).session(data, sample_rate, block_size)


def session_from_midi(
    midi: str | Path,
    instrument: str | Instrument = DEFAULT_INSTRUMENT,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    block_size: int = DEFAULT_BLOCK_SIZE,
    name: str | None = None,
) -> Session:
    """A one-track session for a plain ``.mid``: session and track named after the file."""
    midi = Path(midi)
    if not midi.is_file():
        raise SessionError(midi, "", "MIDI file not found")
    if isinstance(instrument, str):
        try:
            instrument = parse_instrument(instrument)
        except ValueError as exc:
            raise SessionError(midi, "instrument", str(exc)) from None
    stem = safe_name(midi.stem)
    reader = _Reader(midi)
    reader.int_in("sample_rate", sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    reader.int_in("block_size", block_size, 1, MAX_FRAMES)
    session_name = reader.name("name", name if name is not None else stem)
    track = Track(stem, midi.resolve(), instrument)
    reader.stream_names(track)
    return Session(session_name, sample_rate, block_size, (track,))


def safe_name(text: str) -> str:
    """``text`` made into a valid id: other characters become ``_``, cut to 64."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:64].strip(".") or "untitled"
    return cleaned


class _Reader:
    """Checks values against what they must be; every failure names its key."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.base = file.parent

    def fail(self, key: str, problem: str) -> SessionError:
        return SessionError(self.file, key, problem)

    def session(self, data: dict, sample_rate: int | None, block_size: int | None) -> Session:
        self.only(data, "", {"name", "sample_rate", "block_size", "track", "meta"})
        name = self.name("name", self.need(data, "", "name"))
        rate = data.get("sample_rate", DEFAULT_SAMPLE_RATE) if sample_rate is None else sample_rate
        size = data.get("block_size", DEFAULT_BLOCK_SIZE) if block_size is None else block_size
        rate = self.int_in("sample_rate", rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        size = self.int_in("block_size", size, 1, MAX_FRAMES)
        tracks = self.need(data, "", "track")
        if not isinstance(tracks, list) or not tracks:
            raise self.fail("track", "must be one or more [[track]] tables")
        parsed: list[Track] = []
        seen: set[str] = set()
        for index, table in enumerate(tracks):
            key = f"track[{index}]"
            if not isinstance(table, dict):
                raise self.fail(key, "must be a [[track]] table")
            track = self.track(key, table)
            if track.name in seen:
                raise self.fail(f"{key}.name", f"{track.name!r} is used by another track (each track is one stream)")
            clash = seen & set(track_streams(track))
            if clash:
                raise self.fail(f"{key}.name", f"its stream {sorted(clash)[0]!r} is another track's name")
            seen.update(track_streams(track) + [track.name])
            if track.recorded and track.audio is not None:
                self.recording_rate(f"{key}.audio", track.audio, rate)
            parsed.append(track)
        return Session(name, rate, size, tuple(parsed), self.file, self.meta(data.get("meta", {})))

    def meta(self, table: object) -> tuple[tuple[str, str | int | float | bool], ...]:
        """``[meta]``: names to strings, numbers or booleans (session facts, stream.json ``meta``)."""
        if not isinstance(table, dict):
            raise self.fail("meta", "must be a [meta] table of names and values")
        for key, value in table.items():
            if not isinstance(value, (str, int, float, bool)):
                raise self.fail(f"meta.{key}", f"must be a string, number or boolean, got {type(value).__name__}")
        return tuple(sorted(table.items()))

    def track(self, key: str, table: dict) -> Track:
        if "audio" in table:
            return self.recorded_track(key, table)
        self.only(table, key, {"name", "midi", "instrument", "gain_db", "effects", "automation"})
        name = self.name(f"{key}.name", self.need(table, key, "name"))
        midi = self.midi_path(key, self.need(table, key, "midi"))
        instrument = self.instrument(f"{key}.instrument", table.get("instrument", DEFAULT_INSTRUMENT))
        gain, effects, automation = self.chain(key, table)
        track = Track(name, midi, instrument, gain, tuple(effects), tuple(automation))
        if track.instrument_lanes() and instrument.host != "dawdreamer":
            raise self.fail(f"{key}.automation", f"{instrument.kind} instruments (FluidSynth) take no automation")
        self.stream_names(track, f"{key}.name")
        return track

    def recorded_track(self, key: str, table: dict) -> Track:
        """``audio = "take.wav"``: a recording through the chain; its clock is ``midi`` or ``bpm``/``meter``."""
        self.only(table, key, {"name", "audio", "midi", "bpm", "meter", "gain_db", "effects", "automation"})
        name = self.name(f"{key}.name", self.need(table, key, "name"))
        audio = self.audio_path(f"{key}.audio", table["audio"])
        midi = self.midi_path(key, table["midi"]) if "midi" in table else None
        if midi is not None and ("bpm" in table or "meter" in table):
            raise self.fail(f"{key}.{'bpm' if 'bpm' in table else 'meter'}",
                            "a track with a midi conductor takes its tempo and meter from it; drop bpm/meter")
        bpm = self.number(f"{key}.bpm", table.get("bpm", DEFAULT_BPM))
        if not BPM_RANGE[0] <= bpm <= BPM_RANGE[1]:
            raise self.fail(f"{key}.bpm", f"{bpm} is outside {BPM_RANGE[0]:g}..{BPM_RANGE[1]:g}")
        meter = self.meter(f"{key}.meter", table.get("meter", "4/4"))
        gain, effects, automation = self.chain(key, table)
        track = Track(name, midi, None, gain, tuple(effects), tuple(automation), audio, bpm, meter)
        stray = track.instrument_lanes()
        if stray:
            ids = ", ".join(track.effect_ids()) or "none"
            index = track.automation.index(stray[0])
            raise self.fail(f"{key}.automation[{index}].param",
                            f"{stray[0].param!r} is not ID.PARAM of one of this track's effects (ids: {ids}); "
                            "a recording has no instrument")
        self.stream_names(track, f"{key}.name")
        return track

    def chain(self, key: str, table: dict) -> tuple[float, list[Effect], list[Automation]]:
        """gain_db, effects (with their ids) and automation lanes, each effect lane checked
        against its effect: the parameter exists and takes every value the lane gives it."""
        gain = self.number(f"{key}.gain_db", table.get("gain_db", 0.0))
        if not GAIN_DB_RANGE[0] <= gain <= GAIN_DB_RANGE[1]:
            raise self.fail(f"{key}.gain_db", f"{gain} is outside {GAIN_DB_RANGE[0]}..{GAIN_DB_RANGE[1]} dB")
        effects = self.list_of(f"{key}.effects", table.get("effects", []), self.effect)
        ids = effect_ids(effects)
        for index, effect in enumerate(effects):
            if effect.id and ids.index(effect.id) != index:
                raise self.fail(f"{key}.effects[{index}].id", f"{effect.id!r} is the id of another effect")
        effects = [Effect(e.name, e.options, i) for e, i in zip(effects, ids, strict=True)]
        automation = self.list_of(f"{key}.automation", table.get("automation", []), self.automation)
        by_id = dict(zip(ids, effects, strict=True))
        for index, lane in enumerate(automation):
            head, dot, attr = lane.param.partition(".")
            if dot and head in by_id:
                self.effect_lane(f"{key}.automation[{index}]", by_id[head], attr, lane)
        return gain, effects, automation

    def effect_lane(self, key: str, effect: Effect, attr: str, lane: Automation) -> None:
        import pedalboard

        plugin = getattr(pedalboard, effect.name)(**dict(effect.options))
        if attr.startswith("_") or not isinstance(getattr(type(plugin), attr, None), property):
            raise self.fail(f"{key}.param", f"{effect.name} ({effect.id}) has no parameter {attr!r}")
        for index, (_, value) in enumerate(lane.points):
            try:
                setattr(plugin, attr, value)
            except AttributeError:
                raise self.fail(f"{key}.param", f"{effect.name}.{attr} cannot be set (read-only)") from None
            except (TypeError, ValueError) as exc:
                raise self.fail(f"{key}.points[{index}]", f"{effect.name}.{attr} refuses {value}: {exc}") from None

    def midi_path(self, key: str, value: object) -> Path:
        midi = (self.base / self.typed(f"{key}.midi", value, str, "a path string")).resolve()
        if not midi.is_file():
            raise self.fail(f"{key}.midi", f"MIDI file {midi} not found")
        return midi

    def audio_path(self, key: str, value: object) -> Path:
        path = (self.base / self.typed(key, value, str, "a path string")).resolve()
        if not path.is_file():
            raise self.fail(key, f"audio file {path} not found")
        import soundfile

        try:
            soundfile.info(str(path))
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise self.fail(key, f"{path} is not an audio file soundfile reads: {exc}") from None
        return path

    def meter(self, key: str, value: object) -> tuple[int, int]:
        text = self.typed(key, value, str, 'a string like "4/4"')
        num, slash, den = text.partition("/")
        if not (slash and num.isdigit() and den.isdigit() and 1 <= int(num) <= 255
                and int(den) in (1, 2, 4, 8, 16, 32, 64)):
            raise self.fail(key, f"{text!r} is not NUM/DEN (NUM 1-255, DEN a power of two up to 64)")
        return int(num), int(den)

    def instrument(self, key: str, value: object) -> Instrument:
        if isinstance(value, str):
            return self.wrap(key, lambda: parse_instrument(value, base=self.base))
        if not isinstance(value, dict):
            raise self.fail(key, "must be a spec string (faust:NAME, gm, ...) or a table like { faust = \"poly_saw\" }")
        kinds = [k for k in ("faust", "plugin", "vst3", "soundfont", "gm") if k in value]
        if len(kinds) != 1:
            raise self.fail(key, "needs exactly one of faust, plugin, vst3, soundfont, gm"
                            + (f" (has {', '.join(kinds)})" if kinds else ""))
        kind = kinds[0]
        options = {"faust": {"voices"}, "soundfont": {"program"}}.get(kind, set())
        self.only(value, key, {kind} | options)
        target = value[kind]
        if kind == "gm":
            if target is True:
                return self.wrap(key, gm_instrument)
            soundfont = self.typed(f"{key}.gm", target, str, "true or a soundfont path")
            return self.wrap(f"{key}.gm", lambda: gm_instrument(soundfont, base=self.base))
        target = self.typed(f"{key}.{kind}", target, str, "a path or name string")
        if kind == "faust":
            voices = self.int_in(f"{key}.voices", value.get("voices", DEFAULT_VOICES), 1, 64)
            return self.wrap(f"{key}.faust", lambda: faust_instrument(target, voices=voices, base=self.base))
        if kind == "soundfont":
            program = value.get("program")
            if program is not None:
                program = self.int_in(f"{key}.program", program, 0, 127)
            return self.wrap(f"{key}.soundfont", lambda: soundfont_instrument(target, program, base=self.base))
        return self.wrap(f"{key}.{kind}", lambda: plugin_instrument(target, base=self.base))

    def effect(self, key: str, value: object) -> Effect:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table like { pedalboard = \"Reverb\", room_size = 0.4 }")
        name = self.typed(f"{key}.pedalboard", self.need(value, key, "pedalboard"), str, "a class name")
        options = {k: v for k, v in value.items() if k not in ("pedalboard", "id")}
        effect_id = ""
        if "id" in value:
            effect_id = self.typed(f"{key}.id", value["id"], str, "a string")
            if not _EFFECT_ID.match(effect_id):
                raise self.fail(f"{key}.id", f"{effect_id!r} is not 1-32 of A-Z a-z 0-9 _ # -")
        try:
            import pedalboard
        except ImportError:
            raise self.fail(key, "effects need pedalboard (pip install 'sendlearn[hosts]')") from None
        cls = getattr(pedalboard, name, None)
        if name in _NOT_EFFECTS or not (isinstance(cls, type) and issubclass(cls, pedalboard.Plugin)):
            raise self.fail(f"{key}.pedalboard", f"{name!r} is not a pedalboard built-in effect (e.g. Reverb, Delay, Chorus)")
        try:
            cls(**options)  # the constructor is the only complete check of the options
        except (TypeError, ValueError) as exc:
            raise self.fail(key, f"{name} does not take these options: {exc}") from None
        return Effect(name, tuple(sorted(options.items())), effect_id)

    def automation(self, key: str, value: object) -> Automation:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table like { param = \"cutoff\", points = [[0.0, 0.2], [8.0, 0.9]] }")
        self.only(value, key, {"param", "points", "unit"})
        param = self.typed(f"{key}.param", self.need(value, key, "param"), str, "a parameter name")
        if not param or len(param) > 128 or not param.isprintable():
            raise self.fail(f"{key}.param", "must be 1-128 printable characters")
        unit = self.typed(f"{key}.unit", value.get("unit", "seconds"), str, '"seconds" or "beats"')
        if unit not in UNITS:
            raise self.fail(f"{key}.unit", f'{unit!r} is not "seconds" or "beats"')
        points = self.need(value, key, "points")
        if not isinstance(points, list) or not points:
            raise self.fail(f"{key}.points", "must be a non-empty array of [time, value] pairs")
        parsed: list[tuple[float, float]] = []
        for index, point in enumerate(points):
            where = f"{key}.points[{index}]"
            if not isinstance(point, list) or len(point) != 2:
                raise self.fail(where, "must be a [time, value] pair")
            time, val = self.number(where, point[0]), self.number(where, point[1])
            if time < 0:
                raise self.fail(where, f"time {time} is before the start")
            if parsed and time < parsed[-1][0]:
                raise self.fail(where, f"time {time} comes before the previous point's {parsed[-1][0]}")
            parsed.append((time, val))
        return Automation(param, tuple(parsed), unit)

    # -- small checks -------------------------------------------------------------------

    def stream_names(self, track: Track, key: str = "name") -> None:
        # a gm track becomes one stream per channel, a recording two: their longest ids must be valid too
        for name in track_streams(track):
            self.name(key, name)

    def recording_rate(self, key: str, path: Path, rate: int) -> None:
        import soundfile

        found = soundfile.info(str(path)).samplerate
        if found != rate:
            raise self.fail(key, f"{path.name} is at {found} Hz, the session at {rate} Hz (recordings are not "
                            f"resampled: set sample_rate = {found})")

    def name(self, key: str, value: object) -> str:
        try:
            return check_name(value, key)
        except InvalidName as exc:
            raise self.fail(key, exc.problem) from None

    def need(self, table: dict, key: str, name: str) -> Any:
        if name not in table:
            raise self.fail(f"{key}.{name}" if key else name, "is missing")
        return table[name]

    def only(self, table: dict, key: str, allowed: set[str]) -> None:
        for name in table:
            if name not in allowed:
                raise self.fail(f"{key}.{name}" if key else name,
                                f"is not a known key (known: {', '.join(sorted(allowed))})")

    def typed(self, key: str, value: object, kind: type, what: str) -> Any:
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise self.fail(key, f"must be {what}, got {type(value).__name__} {value!r}")
        return value

    def number(self, key: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got {value!r}")
        return float(value)

    def int_in(self, key: str, value: object, low: int, high: int) -> int:
        if type(value) is not int or not low <= value <= high:
            raise self.fail(key, f"must be an integer in {low}..{high}, got {value!r}")
        return value

    def list_of(self, key: str, value: object, item: Callable[[str, object], Any]) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(key, f"must be an array, got {type(value).__name__}")
        return [item(f"{key}[{index}]", entry) for index, entry in enumerate(value)]

    def wrap(self, key: str, make: Callable[[], Instrument]) -> Instrument:
        try:
            return make()
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None
