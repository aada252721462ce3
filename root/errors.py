"""The one root of every exception Send Learn defines, and the exit code each kind ends a command with.

    SendLearnError                         sendlearn.errors
    ├── UsageError                         sendlearn.errors          a command line or input file the command cannot use
    │   ├── MissingExtra                   sendlearn.errors          an optional part is not installed (names the extra)
    │   ├── SessionError (ValueError)      sendlearn.plugin.session.reader  a session file that cannot be rendered
    │   ├── ArdourSessionError             sendlearn.plugin.ardour.session  a path that is no Ardour session Ardour 7 loads
    │   └── DeviceProblem                  sendlearn.plugin.live.portaudio_host  an audio device, channels or rate PortAudio cannot give
    ├── CaptureError (ValueError)          sendlearn.capture.errors  a value that cannot be part of a block
    │   ├── InvalidName                    an id that is not a safe name
    │   ├── InvalidMidi                    bytes that are not one well-formed MIDI message
    │   ├── InvalidBlock                   frames, channels, dtype, offsets or playhead out of range
    │   └── DigestMismatch                 content that does not hash to the digest it carries
    ├── ConsumerFailed                     sendlearn.capture.errors  a hand-off's consumer gave up; its producer stops
    ├── InvalidMessage (ValueError)        sendlearn.transport.errors  this end built a message the protocol forbids
    ├── InvalidState                       sendlearn.transport.errors  this end sent a message its state does not allow
    ├── ProtocolError                      sendlearn.transport.errors  what the peer sent breaks the protocol (close code)
    ├── SpoolMismatch (ValueError)         sendlearn.transport.spool   a spool folder that belongs to another stream
    ├── SenderError                        sendlearn.transport.retry   the stream could not be delivered
    ├── LinkLost                           sendlearn.transport.retry   one connection ended; the sender reconnects
    ├── Refused                            sendlearn.store.errors     what a stream cannot take (close code: server.errors.close_code)
    │   ├── InvalidBlocks                  blocks that break the stream (INVALID_BLOCK)
    │   ├── Overlap                        samples over stored audio of another seq (OVERLAP)
    │   ├── InvalidBye                     a BYE that does not fit the stream (INVALID_BYE)
    │   └── StreamMismatch                 a HELLO that disagrees with the stream on disk (STREAM_MISMATCH)
    ├── StorageError                       sendlearn.store.errors     the receiver's disk refused a write or a sync
    │   └── OldJournal                     sendlearn.store.errors     a work folder in a journal format this store does not read
    ├── StreamBusy                         sendlearn.store.errors     another writer holds the stream
    ├── IllegalTransition                  sendlearn.server.registry  a stream move the receiver's table forbids (a bug, never the peer's)
    ├── FormatError (ValueError)           sendlearn.dataset.errors   a dataset file this sendlearn cannot read
    │   └── FormatTooNew                   written in a newer major format version (names both versions)
    ├── UnknownSession (KeyError)          sendlearn.dataset.errors   a session asked for that the data dir does not hold
    ├── RenderError                        sendlearn.plugin.offline.errors     a render the host could not do
    │   └── ArdourRenderError              sendlearn.plugin.ardour.render     an Ardour session Ardour could not render
    ├── ArdourError                        sendlearn.plugin.ardour.headless   headless Ardour would not run, or a Lua chunk failed
    ├── WorkerError                        sendlearn.plugin.batch.pool       no worker process could take a batch's task
    ├── ChainError                         sendlearn.plugin.chain.effects      an effect chain that cannot run
    ├── BridgeError                        sendlearn.plugin.live.bridge     the live bridge could not start or stopped
    └── ServerDown                         sendlearn.transport.link       the receiver at --server cannot be reached

Local misuse (``InvalidMessage``, ``InvalidState``) is kept apart from what a peer sent
(``ProtocolError``): a sender that builds a bad BYE learns that its BYE is bad, not that the
protocol was broken. A module-level test walks the package and fails on any exception class
outside this tree (tests/test_errors.py).

``exit_code`` is the one place an error becomes the ``sendlearn`` command's exit status.
"""

from __future__ import annotations

# The extra that installs each optional import (pyproject.toml [project.optional-dependencies]);
# tests/test_errors.py checks the two agree.
EXTRAS: dict[str, str] = {
    "dawdreamer": "hosts", "pedalboard": "hosts",
    "jack": "live", "rtmidi": "live", "sounddevice": "live", "aalink": "link",
    "librosa": "dataset",
    "h5py": "export", "webdataset": "export", "matplotlib": "export", "tfrecord": "export", "yaml": "export",
    "torch": "export", "datasets": "export", "tfrecord_lite": "export", "miditok": "export", "symusic": "export",
    "pretty_midi": "export",
    "distributed": "batch",
}

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class SendLearnError(Exception):
    """The root: ``except SendLearnError`` catches every error Send Learn raises on purpose."""


class UsageError(SendLearnError):
    """A command line or input file the command cannot use: exit 2 with this message."""


class MissingExtra(UsageError, ImportError):
    """An optional part this install lacks; the message names the extra that installs it. Also an
    ImportError, so code that falls back when a library is absent keeps working."""

    def __init__(self, module: str, needed_for: str, extra: str | None = None) -> None:
        top = module.split(".")[0]
        self.extra = extra or EXTRAS.get(top)
        hint = f" (pip install 'sendlearn[{self.extra}]')" if self.extra else ""
        super().__init__(f"{needed_for} needs {top}, which this install lacks{hint}", name=top)

    @classmethod
    def from_import(cls, exc: ImportError, needed_for: str) -> MissingExtra | None:
        """The MissingExtra an ImportError stands for, or None when it is not an optional part
        missing (a broken install of our own modules is a bug to show, not an extra to name)."""
        name = getattr(exc, "name", None) or ""
        return cls(name, needed_for) if name.split(".")[0] in EXTRAS else None


def exit_code(exc: BaseException) -> int:
    """The exit status a command ends with when ``exc`` escapes it."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    return EXIT_FAILED
