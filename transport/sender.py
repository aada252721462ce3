"""The sender: drains a processor's hand-off on its own thread and event loop, and streams
the blocks to a receiver over a websocket, through the shared ``Protocol``.

The producer (an audio thread, or an offline render) never waits on the network: it only
touches the hand-off. ``close()`` marks the end of the stream, then waits until every
block is acknowledged as durable and BYE has been answered.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sendlearn.capture import Block, HandOff, StreamInfo

from .codec import Quality
from .errors import ErrorCode, ProtocolError
from .messages import DEFAULT_MAX_FRAME, NOTHING, Ack, Bye, Error, Hello, Welcome
from .protocol import Protocol
from .state import Role

IDLE_POLL = 0.002  # seconds between looks at an empty hand-off


class SenderError(RuntimeError):
    """The stream could not be delivered; ``code`` is the receiver's error code if it sent one."""

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class Sender:
    def __init__(
        self,
        url: str,
        info: StreamInfo,
        handoff: HandOff,
        *,
        token: str | None = None,
        quality: Quality = Quality.FLOAT32,
        max_batch_frames: int = 32768,
        compression_level: int = 3,
        open_timeout: float = 10.0,
        bye_timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.info = info
        self.handoff = handoff
        self.token = token
        self.quality = quality
        self.max_batch_frames = max(max_batch_frames, info.block_size)
        self.compression_level = compression_level
        self.open_timeout = open_timeout
        self.bye_timeout = bye_timeout
        self.ssl_context = ssl_context
        self.error: SenderError | None = None
        self.max_frame_size = DEFAULT_MAX_FRAME  # until WELCOME says the receiver's
        self.blocks_sent = 0
        self.bytes_sent = 0
        self.audio_bytes_sent = 0
        self.durable_through = NOTHING
        self.rtt_seconds: float | None = None
        self._next_seq = 0
        self._last_seq = NOTHING
        self._sent_at: dict[int, float] = {}  # last seq of a frame -> when it was sent
        self._started = 0.0
        self._finished = 0.0
        self._thread = threading.Thread(target=self._run, name=f"sendlearn-sender-{info.stream}", daemon=True)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Sender:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """End the stream: no more blocks; wait until all are durable. Raises SenderError."""
        self.handoff.close()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise SenderError(f"stream {self.info.stream} still sending after {timeout} s")
        if self.error is not None:
            raise self.error

    def __enter__(self) -> Sender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- counters -------------------------------------------------------------------------

    @property
    def blocks_acked(self) -> int:
        return self.durable_through + 1

    @property
    def send_rate(self) -> float:
        """Bytes per second sent since start."""
        end = self._finished or time.monotonic()
        return self.bytes_sent / max(end - self._started, 1e-9)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive() and self._started > 0

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._stream())
        except SenderError as exc:
            self.error = exc
        except (OSError, ConnectionClosed, TimeoutError) as exc:
            self.error = SenderError(f"connection to {self.url} failed: {exc}")
        except Exception as exc:  # report, never hang the producer
            self.error = SenderError(f"sender failed: {type(exc).__name__}: {exc}")
        finally:
            self._finished = time.monotonic()
            if self.error is not None:
                self.handoff.fail(str(self.error))

    async def _stream(self) -> None:
        async with connect(self.url, compression=None, open_timeout=self.open_timeout,
                           max_size=DEFAULT_MAX_FRAME + 1, ssl=self.ssl_context, ping_interval=20,
                           ping_timeout=60) as ws:
            protocol = Protocol(Role.SENDER, compression_level=self.compression_level)
            await self._handshake(ws, protocol)
            acks = asyncio.create_task(self._read_acks(ws, protocol))
            try:
                await self._send_blocks(ws, protocol, acks)
                protocol.send(Bye(self._last_seq))
                await self._flush(ws, protocol)
                await asyncio.wait_for(self._until_durable(acks, self._last_seq), self.bye_timeout)
            finally:
                acks.cancel()

    async def _handshake(self, ws: ClientConnection, protocol: Protocol) -> None:
        info = self.info
        protocol.send(Hello(info.session, info.stream, info.track, info.sample_rate, info.channels,
                            info.block_size, info.host, self.token, self._next_seq))
        await self._flush(ws, protocol)
        protocol.receive_data(await asyncio.wait_for(ws.recv(), self.open_timeout))
        for event in protocol.events_received():
            if isinstance(event, Welcome):
                self.durable_through = event.durable_through
                self.max_frame_size = event.max_frame_size
                self._next_seq = max(self._next_seq, event.durable_through + 1)
                return
            if isinstance(event, Error):
                raise SenderError(f"receiver refused the stream: {event.code.name}: {event.reason}", event.code)
        raise SenderError(f"receiver answered HELLO with nothing usable ({protocol.close_reason})",
                          protocol.close_code)

    async def _send_blocks(self, ws: ClientConnection, protocol: Protocol, acks: asyncio.Task) -> None:
        while True:
            if acks.done():
                acks.result()  # the receiver ended the stream: raise its reason
                raise SenderError("receiver closed the connection mid-stream")
            batch = self._take_batch()
            if not batch:
                if self.handoff.finished:
                    return
                await asyncio.sleep(IDLE_POLL)
                continue
            dropped = self._dropped_before(batch)
            for part in self._encode(protocol, batch, dropped):
                self._sent_at[part[-1].seq] = time.monotonic()
                await self._flush(ws, protocol)
                self.blocks_sent += len(part)

    def _encode(self, protocol: Protocol, batch: list[Block], dropped: list[tuple[int, int]]) -> list[list[Block]]:
        """Queue ``batch`` as one frame, or split in halves until each fits the receiver's limit."""
        try:
            self.bytes_sent += protocol.send_blocks(batch, self.quality, dropped=dropped,
                                                    max_size=self.max_frame_size)
            self.audio_bytes_sent += protocol.last_audio_payload
            return [batch]
        except ProtocolError:
            if len(batch) == 1:
                raise SenderError(f"block {batch[0].seq} alone is over the receiver's frame limit "
                                  f"({self.max_frame_size} bytes)", ErrorCode.FRAME_TOO_LARGE) from None
        half = len(batch) // 2
        return self._encode(protocol, batch[:half], dropped) + self._encode(protocol, batch[half:], [])

    def _take_batch(self) -> list[Block]:
        batch: list[Block] = []
        frames = 0
        while frames < self.max_batch_frames:
            block = self.handoff.take()
            if block is None:
                break
            if block.seq <= self.durable_through:
                continue  # the receiver already has it (resume)
            batch.append(block)
            frames += block.frames
        return batch

    def _dropped_before(self, batch: list[Block]) -> list[tuple[int, int]]:
        """Seq ranges the audio thread dropped (holes in the numbering), named once each."""
        ranges = []
        for block in batch:
            if block.seq > self._next_seq:
                ranges.append((self._next_seq, block.seq - 1))
            self._next_seq = block.seq + 1
            self._last_seq = block.seq
        offered_last = self.handoff.offered - 1  # processors number every block they were given
        self._last_seq = max(self._last_seq, offered_last)
        return ranges

    async def _read_acks(self, ws: ClientConnection, protocol: Protocol) -> None:
        async for data in ws:
            if isinstance(data, str):
                continue
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Ack):
                    self._acked(event.through)
                elif isinstance(event, Error):
                    raise SenderError(f"receiver ended the stream: {event.code.name}: {event.reason}", event.code)
            if protocol.close_code is not None:
                raise SenderError(f"protocol error: {protocol.close_reason}", protocol.close_code)

    def _acked(self, through: int) -> None:
        self.durable_through = max(self.durable_through, through)
        now = time.monotonic()
        for seq in [s for s in self._sent_at if s <= through]:
            self.rtt_seconds = now - self._sent_at.pop(seq)

    async def _until_durable(self, acks: asyncio.Task, last_seq: int) -> None:
        while self.durable_through < last_seq:
            if acks.done():
                acks.result()  # raises the receiver's error, if that is why it stopped
                raise SenderError(f"connection closed with seqs up to {last_seq} not all acknowledged")
            await asyncio.sleep(IDLE_POLL)

    @staticmethod
    async def _flush(ws: ClientConnection, protocol: Protocol) -> None:
        for frame in protocol.data_to_send():
            await ws.send(frame)
