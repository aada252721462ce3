"""One error root, one exit-code map, and a missing extra named by every command.

The receiver-only install is real: a new venv that sees the package and exactly the
distributions its base requirements pull in (no extra), as `pip install sendlearn` leaves it.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.metadata as metadata
import inspect
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import sendlearn
from midi_files import write_tune
from receiving import capture
from sendlearn.capture import StreamInfo
from sendlearn.errors import EXTRAS, MissingExtra, SendLearnError, UsageError, exit_code
from sendlearn.server.receiver import ReceiverThread
from sendlearn.transport import Bye, ErrorCode, Hello, InvalidMessage, InvalidState, Protocol, ProtocolError, Role

ROOT = Path(__file__).resolve().parent.parent
BUILTIN_EXCEPTIONS = {name for name, value in vars(builtins).items()
                      if isinstance(value, type) and issubclass(value, BaseException)}


def package_modules() -> list[str]:
    names = ["sendlearn"]
    for info in pkgutil.walk_packages(sendlearn.__path__, "sendlearn."):
        if not info.name.endswith("__main__"):  # running it is what importing it does
            names.append(info.name)
    return names


def defined_exceptions() -> dict[str, type]:
    found: dict[str, type] = {}
    for name in package_modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_exception_the_package_defines_descends_from_the_root() -> None:
    found = defined_exceptions()
    assert len(found) >= 20  # the walk really reached the subpackages
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, SendLearnError))
    assert outside == []
    # classes a module-level walk cannot see (defined inside a function) must not start a tree of their own
    for name in package_modules():
        source = inspect.getsource(importlib.import_module(name))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                qualified = f"{name}.{node.name}"
                assert not (bases & BUILTIN_EXCEPTIONS) or qualified in found, qualified


def test_the_tree_in_the_root_module_names_every_class() -> None:
    drawn = set(re.findall(r"\b([A-Z][A-Za-z]+)\b", sendlearn.errors.__doc__ or ""))
    missing = sorted(name for name, cls in defined_exceptions().items() if cls.__name__ not in drawn)
    assert missing == []


def test_local_misuse_is_not_a_peer_protocol_error() -> None:
    with pytest.raises(InvalidMessage) as bad:
        Bye(last_seq=0, stats=(("deep", [[[[1]]]]),))
    assert not isinstance(bad.value, ProtocolError) and bad.value.code is ErrorCode.MALFORMED
    with pytest.raises(InvalidState):
        Protocol(Role.SENDER).send(Bye())
    # the same check on bytes from a peer is the peer's protocol error, with the same code
    receiver = Protocol(Role.RECEIVER)
    receiver.receive_data(b"\x00" + __import__("msgpack").packb(
        {"type": "hello", "version": 1, "session": "s", "stream": "t", "track": "", "sample_rate": 48000,
         "channels": 2, "block_size": 512, "host": "h", "token": None, "resume_from": 0, "meta": {"": 1}}))
    assert receiver.close_code is ErrorCode.MALFORMED and "keys are names" in (receiver.close_reason or "")
    assert Hello("s", "t", "", 48000, 2, 512, "h").session == "s"


def test_exit_codes_come_from_one_map() -> None:
    assert exit_code(UsageError("x")) == 2
    assert exit_code(MissingExtra("jack", "live capture")) == 2
    assert exit_code(SendLearnError("x")) == 1
    assert exit_code(KeyboardInterrupt()) == 130
    assert "pip install 'sendlearn[live]'" in str(MissingExtra("jack", "live capture"))


def _top_level_names(dist: metadata.Distribution) -> set[str]:
    listed = dist.read_text("top_level.txt")
    if listed:
        return {line.strip() for line in listed.splitlines() if line.strip()}
    names = set()
    for file in dist.files or ():
        top = file.parts[0]
        if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__"):
            continue
        names.add(top.split(".")[0] if len(file.parts) == 1 else top)
    return names


def test_the_extras_table_agrees_with_pyproject() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS.values()) <= set(extras)
    for extra, requirements in extras.items():
        if extra == "dev":
            continue
        for requirement in requirements:
            dist = metadata.distribution(re.split(r"[<>=!~\[; ]", requirement)[0])
            named = {EXTRAS.get(name) for name in _top_level_names(dist)}
            assert extra in named, f"{requirement}: none of {_top_level_names(dist)} is in EXTRAS as {extra!r}"


# --- a real receiver-only install ---------------------------------------------------------------

def _base_closure() -> list[metadata.Distribution]:
    """The distributions `pip install sendlearn` (no extra) brings: its requirements, theirs, ..."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = [r for r in metadata.requires("sendlearn") or [] if "extra ==" not in r]
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = requirement.name.lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist = metadata.distribution(requirement.name)
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    return list(seen.values())


@pytest.fixture(scope="module")
def receiver_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv whose python sees the package and its base requirements, nothing else."""
    root = tmp_path_factory.mktemp("receiver-only")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    links = root / "packages"
    links.mkdir()
    installed = Path(metadata.distribution("numpy").locate_file(""))
    for dist in _base_closure():
        for name in _top_level_names(dist):
            for candidate in [installed / name, *installed.glob(f"{name}.*"), *installed.glob(f"{name}.libs")]:
                if candidate.exists() and not (links / candidate.name).exists():
                    (links / candidate.name).symlink_to(candidate)
        info = Path(dist._path)  # type: ignore[attr-defined]  # its .dist-info: metadata for importlib
        (links / info.name).symlink_to(info)
    package_tree = Path(sendlearn.__file__).parent.parent  # the editable install's link tree
    (site / "receiver_only.pth").write_text(f"{links}\n{package_tree}\n")
    python = root / "venv" / "bin" / "python"
    probe = subprocess.run([python, "-c", "import sendlearn.server, sendlearn.dataset; import jack"],
                           capture_output=True, text=True)
    assert "No module named 'jack'" in probe.stderr  # the package imports; the extras are really absent
    return python


@pytest.fixture(scope="module")
def one_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    info = StreamInfo("sess", "keys", 48000, 2, 512, "Keys", "test")
    with ReceiverThread(data) as receiver:
        capture(info, receiver.url, 8)
    return data


def _command(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "sendlearn", *args], capture_output=True, text=True, timeout=120)


def test_the_receiver_only_install_runs_the_receivers_commands(receiver_only: Path, one_stream: Path) -> None:
    status = _command(receiver_only, "status", "--data-dir", str(one_stream), "--json")
    assert status.returncode == 0, status.stderr
    assert '"stream": "keys"' in status.stdout
    assert _command(receiver_only, "serve", "--help").returncode == 0


@pytest.mark.parametrize(("extra", "args"), [
    ("hosts", ["render", "{tune}", "--data-dir", "{out}"]),
    ("hosts", ["demo", "--data-dir", "{out}"]),
    ("live", ["live", "--seconds", "1", "--data-dir", "{out}"]),
    ("live", ["live", "--audio", "portaudio", "--seconds", "1", "--data-dir", "{out}"]),
    ("live", ["live", "--list-devices"]),
    ("dataset", ["sequences", "--data-dir", "{data}", "--window", "0.04", "--overlap", "0"]),
    ("export", ["export", "hdf5", "--data-dir", "{data}", "--out", "{out}/export"]),
    ("export", ["report", "--data-dir", "{data}", "--out", "{out}/report.html"]),
    ("batch", ["render", "{tunes}", "--scheduler", "tcp://127.0.0.1:9", "--data-dir", "{out}"]),
])
def test_every_command_names_the_extra_it_misses(receiver_only: Path, one_stream: Path, tmp_path: Path,
                                                 extra: str, args: list[str]) -> None:
    tunes = tmp_path / "tunes"
    tunes.mkdir()
    tune = write_tune(tunes / "tune.mid", [(0, 60, 100)])
    data = tmp_path / "data"
    subprocess.run(["cp", "-a", str(one_stream), str(data)], check=True)  # sequences writes into it
    got = _command(receiver_only, *(a.format(tune=tune, tunes=tunes, out=tmp_path / "out", data=data) for a in args))
    assert got.returncode == 2, (got.stdout, got.stderr)
    assert "Traceback" not in got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sendlearn {args[0]}: ")
    assert f"pip install 'sendlearn[{extra}]'" in lines[0]
