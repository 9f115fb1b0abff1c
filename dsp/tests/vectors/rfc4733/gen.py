#!/usr/bin/env python3
"""Regenerates the RFC 4733 packet-sequence vectors in this folder (see README.md).

Record format, repeated to end of file:
    u32 BE  RTP timestamp
    u8      flags: bit 0 = RTP marker, bit 1 = payload is RFC 2198 RED (event blocks PT 101)
    u8      payload length
    bytes   payload
"""
import struct

EV_PT = 101


def ev(code, end, vol, dur):
    return bytes([code, (0x80 if end else 0) | (vol & 0x3F)]) + struct.pack(">H", dur)


def rec(ts, payload, marker=False, red=False):
    return struct.pack(">IBB", ts & 0xFFFFFFFF, (1 if marker else 0) | (2 if red else 0), len(payload)) + payload


def red(blocks):
    """blocks: list of (ts_offset, data), oldest first; the last one is the primary."""
    hdr = b""
    for off, data in blocks[:-1]:
        hdr += bytes([0x80 | EV_PT, (off >> 6) & 0xFF, ((off & 0x3F) << 2) | (len(data) >> 8), len(data) & 0xFF])
    hdr += bytes([EV_PT])
    return hdr + b"".join(d for _, d in blocks)


def write(name, records):
    with open(name, "wb") as f:
        f.write(b"".join(records))


# §2.3 Figure 1: one report, DTMF '5', E=1, R=1 (must be ignored), volume 10, duration 1600.
with open("s2_3_figure1_report.bin", "wb") as f:
    f.write(bytes([0x05, 0x80 | 0x40 | 10, 0x06, 0x40]))

# §2.5.1.2 / §2.5.1.4: digit '1' at ts 0x1000, 50 ms updates, end sent three times.
T = 0x1000
write("s2_5_1_basic_digit.bin", [
    rec(T, ev(1, False, 10, 400), marker=True),
    rec(T, ev(1, False, 10, 800)),
    rec(T, ev(1, False, 10, 1200)),
    rec(T, ev(1, True, 10, 1600)),
    rec(T, ev(1, True, 10, 1600)),
    rec(T, ev(1, True, 10, 1600)),
])

# §2.5.2: the packets with the marker bit (the start) are lost; the first seen is an update.
T = 48000
write("s2_5_2_lost_start.bin", [
    rec(T, ev(9, False, 7, 800)),
    rec(T, ev(9, False, 7, 1200)),
    rec(T, ev(9, True, 7, 1440)),
    rec(T, ev(9, True, 7, 1440)),
    rec(T, ev(9, True, 7, 1440)),
])

# §2.5.2: all three end packets of '4' lost; '#' begins at a new timestamp.
write("s2_5_2_lost_end.bin", [
    rec(8000, ev(4, False, 12, 400), marker=True),
    rec(8000, ev(4, False, 12, 800)),
    rec(10400, ev(11, False, 12, 400), marker=True),
    rec(10400, ev(11, True, 12, 800)),
    rec(10400, ev(11, True, 12, 800)),
    rec(10400, ev(11, True, 12, 800)),
])

# Reordering: an update overtaken by a newer one, and a late end of an earlier event.
write("s2_5_2_reordered.bin", [
    rec(16000, ev(2, False, 10, 400), marker=True),
    rec(16000, ev(2, False, 10, 1200)),
    rec(16000, ev(2, False, 10, 800)),      # older update, arrives late
    rec(16000, ev(2, True, 10, 1600)),
    rec(20000, ev(3, False, 10, 400), marker=True),
    rec(16000, ev(2, True, 10, 1600)),      # a late end retransmission of '2'
    rec(20000, ev(3, True, 10, 800)),
])

# §2.5.1.3: a long event. Segment 1 reaches 0xFFFF without E; segment 2 starts at
# ts + 0xFFFF. The event starts 0x8000 before the 2^32 wrap, so it straddles it.
T = 0xFFFF8000
write("s2_5_1_3_long_event.bin", [
    rec(T, ev(0, False, 10, 400), marker=True),
    rec(T, ev(0, False, 10, 32000)),
    rec(T, ev(0, False, 10, 0xFFFF)),
    rec(T + 0xFFFF, ev(0, False, 10, 400)),
    rec(T + 0xFFFF, ev(0, True, 10, 4000)),
    rec(T + 0xFFFF, ev(0, True, 10, 4000)),
    rec(T + 0xFFFF, ev(0, True, 10, 4000)),
])

# §2.5.1.4 + RFC 2198: the user dials "911". '9' lasted 1600 ticks from ts 0, the first '1'
# 2000 ticks from ts 7040, the last '1' started at ts 11200 and has run 400 ticks. Each packet
# repeats the two previous events as redundant blocks. Then the next update of the last '1'.
write("s2_5_1_4_red_911.bin", [
    rec(11200, red([(11200, ev(9, True, 7, 1600)), (4160, ev(1, True, 7, 2000)), (0, ev(1, False, 7, 400))]), marker=True, red=True),
    rec(11200, red([(11200, ev(9, True, 7, 1600)), (4160, ev(1, True, 7, 2000)), (0, ev(1, False, 7, 800))]), red=True),
])
