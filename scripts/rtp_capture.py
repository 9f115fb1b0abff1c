#!/usr/bin/env python3
"""A recorder-side RTP receiver for the end-to-end recorder runs (scripts/e2e_recorder.sh).

    rtp_capture.py OUT_PREFIX PORT [PORT...]

Listens on 127.0.0.1:PORT for each PORT and, on SIGTERM / SIGINT, writes what each port
received as OUT_PREFIX_PORT.wav (mono 8 kHz 16-bit; PCMU payloads decoded and placed by RTP
timestamp relative to the first packet, so gaps stay silent and reordering is harmless) and
OUT_PREFIX_PORT.json ({"packets", "pcmu", "other_pt": {pt: count}, "ssrcs"}). Only the stdlib.
"""
import json
import selectors
import signal
import socket
import struct
import sys
import wave


def ulaw_to_linear(b):
    b = ~b & 0xFF
    t = ((b & 0x0F) << 3) + 0x84
    t <<= (b & 0x70) >> 4
    return (0x84 - t) if (b & 0x80) else (t - 0x84)


ULAW = [ulaw_to_linear(i) for i in range(256)]


def main():
    prefix, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    sel = selectors.DefaultSelector()
    streams = {}
    for p in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", p))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, p)
        streams[p] = {"pkts": [], "other": {}, "ssrcs": set()}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("ready", flush=True)
    while not stop:
        for key, _ in sel.select(timeout=0.2):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                continue
            st = streams[key.data]
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            pt = data[1] & 0x7F
            ts, ssrc = struct.unpack("!II", data[4:12])
            st["ssrcs"].add(ssrc)
            off = 12 + 4 * (data[0] & 0x0F)
            if data[0] & 0x10 and len(data) >= off + 4:
                off += 4 + 4 * struct.unpack("!H", data[off + 2:off + 4])[0]
            if pt != 0:
                st["other"][pt] = st["other"].get(pt, 0) + 1
                continue
            st["pkts"].append((ts, data[off:]))
    for p, st in streams.items():
        pcm = []
        if st["pkts"]:
            first = st["pkts"][0][0]
            for ts, payload in st["pkts"]:
                o = (ts - first) & 0xFFFFFFFF
                if o > 8000 * 3600:
                    continue
                if len(pcm) < o + len(payload):
                    pcm.extend([0] * (o + len(payload) - len(pcm)))
                for i, b in enumerate(payload):
                    pcm[o + i] = ULAW[b]
        with wave.open(f"{prefix}_{p}.wav", "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(struct.pack(f"<{len(pcm)}h", *pcm))
        with open(f"{prefix}_{p}.json", "w") as f:
            json.dump({"packets": len(st["pkts"]) + sum(st["other"].values()),
                       "pcmu": len(st["pkts"]), "other_pt": st["other"],
                       "ssrcs": len(st["ssrcs"])}, f)


if __name__ == "__main__":
    main()
