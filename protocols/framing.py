"""Link frames of PROTOCOL.md 2.1: `STX | LEN (2 BCD bytes) | MESSAGE | ETX | LRC`.

Pure code: `build_frame` and an incremental `FrameDecoder` that is fed whatever chunks
the transport hands over. Timing (the 200 ms inter-byte stall) is the link's business:
the decoder only has to be resettable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
MAX_MESSAGE = 2048


def lrc(data: bytes) -> int:
    """XOR of every byte (the caller passes LEN, MESSAGE and ETX; STX is not included)."""
    # Fold the bytes as one big integer, halving its width each round: a handful of
    # big-int operations instead of a Python loop over up to 2 KB.
    n = int.from_bytes(data, "little")
    width = len(data)
    while width > 1:
        half = (width + 1) // 2
        n = (n & ((1 << (8 * half)) - 1)) ^ (n >> (8 * half))
        width = half
    return n


def encode_len(length: int) -> bytes:
    """LEN as 4 BCD digits in 2 bytes: 137 -> b'\\x01\\x37'."""
    if not 1 <= length <= MAX_MESSAGE:
        raise ValueError(f"message length {length} outside 1..{MAX_MESSAGE}")
    digits = f"{length:04d}"
    return bytes(((int(digits[0]) << 4) | int(digits[1]), (int(digits[2]) << 4) | int(digits[3])))


def decode_len(hi: int, lo: int) -> int | None:
    """The length LEN says, or None when a nibble is not a decimal digit."""
    nibbles = (hi >> 4, hi & 0x0F, lo >> 4, lo & 0x0F)
    if any(n > 9 for n in nibbles):
        return None
    return nibbles[0] * 1000 + nibbles[1] * 100 + nibbles[2] * 10 + nibbles[3]


def build_frame(message: bytes) -> bytes:
    """The frame around `message`; ValueError when its length is outside 1..2048."""
    if not isinstance(message, bytes | bytearray | memoryview):
        raise TypeError("message must be bytes")
    body = encode_len(len(message)) + bytes(message) + bytes((ETX,))
    return bytes((STX,)) + body + bytes((lrc(body),))


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete frame with a valid LEN, ETX and LRC."""

    message: bytes


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that must be NAKed.

    `end_known` is False when the decoder cannot tell where the bad frame ends (LEN
    unusable, or ETX not where LEN says): it then swallows every byte until `reset()`,
    and the link answers NAK once the line has gone quiet.
    """

    reason: str
    end_known: bool = True


@dataclass(frozen=True, slots=True)
class Control:
    """An ACK or NAK byte seen outside a frame."""

    byte: int


Event = Frame | BadFrame | Control


class _State(Enum):
    IDLE = auto()
    LEN_HI = auto()
    LEN_LO = auto()
    BODY = auto()
    ETX = auto()
    LRC = auto()
    SKIP = auto()


class FrameDecoder:
    """Incremental frame decoder: `feed()` any chunk, get the events it completes."""

    def __init__(self) -> None:
        self._state = _State.IDLE
        self._len_hi = 0
        self._length = 0
        self._body = bytearray()
        self._xor = 0

    @property
    def in_frame(self) -> bool:
        """True while part of a frame has arrived (including a bad frame being skipped)."""
        return self._state is not _State.IDLE

    @property
    def skipping(self) -> bool:
        """True after a bad frame whose end is unknown: bytes are dropped until reset()."""
        return self._state is _State.SKIP

    def reset(self) -> None:
        """Forget any partial frame (the link calls this on the inter-byte stall)."""
        self._state = _State.IDLE
        self._body = bytearray()

    def _bad(self, reason: str) -> BadFrame:
        self._state = _State.SKIP
        self._body = bytearray()
        return BadFrame(reason, end_known=False)

    def feed(self, data: bytes) -> list[Event]:
        """The frames, bad-frame verdicts and ACK/NAK bytes that `data` completes."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"feed() takes bytes, not {type(data).__name__}")
        events: list[Event] = []
        i = 0
        n = len(data)
        while i < n:
            state = self._state
            if state is _State.IDLE:
                b = data[i]
                i += 1
                if b == STX:
                    self._state = _State.LEN_HI
                elif b in (ACK, NAK):
                    events.append(Control(b))
                # anything else outside a frame is noise (PROTOCOL.md 2.1)
            elif state is _State.SKIP:
                return events  # everything until reset() is part of the bad frame
            elif state is _State.LEN_HI:
                self._len_hi = data[i]
                i += 1
                self._state = _State.LEN_LO
            elif state is _State.LEN_LO:
                lo = data[i]
                i += 1
                length = decode_len(self._len_hi, lo)
                if length is None:
                    events.append(self._bad(f"LEN {self._len_hi:02x}{lo:02x} is not BCD"))
                elif not 1 <= length <= MAX_MESSAGE:
                    events.append(self._bad(f"LEN {length} outside 1..{MAX_MESSAGE}"))
                else:
                    self._length = length
                    self._xor = self._len_hi ^ lo
                    self._body = bytearray()
                    self._state = _State.BODY
            elif state is _State.BODY:
                take = min(self._length - len(self._body), n - i)
                self._body += data[i : i + take]
                i += take
                if len(self._body) == self._length:
                    self._state = _State.ETX
            elif state is _State.ETX:
                b = data[i]
                i += 1
                if b != ETX:
                    events.append(self._bad(f"byte {b:#04x} where LEN puts ETX"))
                else:
                    self._state = _State.LRC
            else:  # _State.LRC
                b = data[i]
                i += 1
                message = bytes(self._body)
                expected = self._xor ^ lrc(message) ^ ETX
                self._state = _State.IDLE
                self._body = bytearray()
                if b == expected:
                    events.append(Frame(message))
                else:
                    events.append(BadFrame(f"LRC {b:#04x}, expected {expected:#04x}"))
        return events
