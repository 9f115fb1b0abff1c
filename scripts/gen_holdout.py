#!/usr/bin/env python3
"""gen_holdout.py OUT_DIR [--calls N] [--seed S] — a third spoken-identifier test set.

dev and val (../shared/eval) are fixed: once a policy's errors on them have been read, they no
longer measure generalisation. This writes a fresh labelled set in the same schema (scored by
the same ../shared/eval/score.py) whose wording, voices and identifier renderings were written
apart from both: other espeak-ng voices (none of dev's or val's), other agent questions,
lead-ins, read-backs and everyday-number sentences, and identifiers spoken in the ways people
say them (groups, "oh", "double", dates as dates). Each seed gives another set; the default
seed is the one the README quotes.

Audio: espeak-ng at 22.05 kHz, band-limited to the telephone band (300-3400 Hz) and resampled
to 8 kHz by sox, levels set per speaker, a noise floor added, then a mu-law round trip, like
the shared corpus. Labels: speech spans (non-sensitive, `contains_number_words` for harmless
numbers), spoken_id spans (the identifier words only, lead-ins are speech), no DTMF.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import wave

import numpy as np

FS = 8000
VOICES = [  # none of dev's or val's voice/variant pairs
    "en-us+Annie", "en-gb+david", "en+belinda", "en-us+john", "en-gb-scotland+linda",
    "en-029+paul", "en-us-nyc+robert", "en-gb-x-rp+shelby", "en+m7", "en-us+f5",
    "en-gb-x-gbcwmd+zac", "en-us+klatt3",
]
ONES = "zero one two three four five six seven eight nine".split()
TEENS = ("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen "
         "nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
MONTHS = ("January February March April May June July August September October November "
          "December").split()
ORD = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh",
       8: "eighth", 9: "ninth", 10: "tenth", 11: "eleventh", 12: "twelfth", 13: "thirteenth",
       14: "fourteenth", 15: "fifteenth", 16: "sixteenth", 17: "seventeenth",
       18: "eighteenth", 19: "nineteenth", 20: "twentieth", 30: "thirtieth"}


def two_digit(n):
    if n < 10:
        return ONES[n]
    if n < 20:
        return TEENS[n - 10]
    t, o = divmod(n, 10)
    return TENS[t] + ("" if o == 0 else "-" + ONES[o])


def ordinal(n):
    if n in ORD:
        return ORD[n]
    t, o = divmod(n, 10)
    return TENS[t] + "-" + ORD[o]


def year(y, r):
    hi, lo = divmod(y, 100)
    if hi == 20 and lo < 10:
        return "two thousand" + ("" if lo == 0 else " and " + ONES[lo])
    return two_digit(hi) + " " + ("oh " + ONES[lo] if lo < 10 else two_digit(lo))


def say_digits(ds, r, groups):
    """Digits read one by one, in groups; zero as "oh" or "zero", pairs sometimes "double"."""
    zero = r.choice(["oh", "zero"])
    out, i = [], 0
    for g in groups:
        part, j = [], i
        while j < i + g:
            d = ds[j]
            if j + 1 < i + g and ds[j + 1] == d and r.random() < 0.3:
                part.append("double " + (zero if d == "0" else ONES[int(d)]))
                j += 2
                continue
            part.append(zero if d == "0" else ONES[int(d)])
            j += 1
        out.append(" ".join(part))
        i += g
    return ", ".join(out)


def rand_digits(r, n, first=None):
    s = first or str(r.randint(1, 9))
    while len(s) < n:
        s += str(r.randint(0, 9))
    return s


# Identifiers read as plain digit groups (a card starts with 4 or 5).
DIGIT_GROUPS = {"card": [4, 4, 4, 4], "cvv": [3], "ssn": [3, 2, 4], "ssn_last4": [4],
                "phone": [3, 3, 4]}


def identifier(kind, r):
    """(spoken text, digits) of one identifier of `kind`."""
    if kind in DIGIT_GROUPS:
        first = r.choice(["4", "5"]) if kind == "card" else None
        groups = DIGIT_GROUPS[kind]
        ds = rand_digits(r, sum(groups), first)
        return say_digits(ds, r, groups), ds
    if kind == "account":
        n = r.choice([8, 10])
        ds = rand_digits(r, n)
        return say_digits(ds, r, [4, n - 4] if r.random() < 0.5 else [n // 2, n // 2]), ds
    if kind == "member_id":
        letters = "".join(r.choice("ABCDEFGHJKLMNPRSTWXYZ") for _ in range(2))
        ds = rand_digits(r, 7)
        return " ".join(letters) + ", " + say_digits(ds, r, [3, 4]), letters + ds
    if kind == "expiry":
        m, y = r.randint(1, 12), r.randint(26, 31)
        style = r.randint(0, 2)
        if style == 0:
            text = ("oh " + ONES[m] if m < 10 else two_digit(m)) + " " + two_digit(y)
        elif style == 1:
            text = MONTHS[m - 1] + " twenty " + two_digit(y)
        else:
            text = ("oh " + ONES[m] if m < 10 else two_digit(m)) + " slash " + two_digit(y)
        return text, f"{m:02d}{y:02d}"
    if kind == "dob":
        m, d, y = r.randint(1, 12), r.randint(1, 28), r.randint(1941, 2004)
        style = r.randint(0, 2)
        if style == 0:
            text = f"{MONTHS[m - 1]} {ordinal(d)}, {year(y, r)}"
        elif style == 1:
            text = f"the {ordinal(d)} of {MONTHS[m - 1]}, {year(y, r)}"
        else:
            text = f"{two_digit(m)}, {two_digit(d)}, {two_digit(y % 100)}"
        return text, f"{m:02d}{d:02d}{y}"
    raise ValueError(kind)


ASKS = {
    "card": ["Which card are we putting this on? I'll need the long number.",
             "Go ahead with the number across the front whenever you're ready."],
    "cvv": ["And the little code printed by the signature strip?",
            "Last thing on the card, the three on the reverse."],
    "expiry": ["When does that card run out?", "What's the valid thru date on it?"],
    "ssn": ["For the file I'll need your social.",
            "Could I take your social security to pull you up?"],
    "ssn_last4": ["Just the final four of your social, please.",
                  "I only need the end of your social, the last four."],
    "phone": ["What's the best number to ring you back on?",
              "Is there a callback number you'd like us to use?"],
    "account": ["Which account are we looking at today?",
                "Do you have the account reference on your statement?"],
    "member_id": ["Can you read me the ID off your insurance card?",
                  "What's the member ID on the plan?"],
    "dob": ["And your birthday, for security?", "Could you confirm your date of birth?"],
}
LEADS = ["Sure, it's", "Yeah, hang on. Okay, it's", "That would be", "Right, I've got it here.",
         "Let me see.", "Yes, so it's", "", "", "Mm, okay."]
VOLUNTEER = {
    "account": "Hi there, I'm ringing about my bill, the account is",
    "member_id": "Hello, I'm calling about a claim, my member ID is",
    "phone": "You can reach me back on",
    "dob": "I was born on",
}
READBACK = ["So that's {}, is that right?", "Let me repeat that, {}.", "I have {}. Correct?"]
CONFIRM = ["Yes, that's it.", "Correct.", "That's right, yeah.", "Yep."]
# Everyday numbers that must stay audible (written for this set, not from dev or val).
EVERYDAY = [
    "I've been on hold for about twenty minutes.",
    "Our office is on the fourth floor, past the lifts.",
    "It came to forty-five dollars in the end.",
    "The appointment was at half past three.",
    "I have two kids, so mornings are busy.",
    "It arrived three weeks late.",
    "This is the second time I've called today.",
    "You can take the next left after the first light.",
    "We ordered six boxes but only got five.",
    "The clinic opens at eight thirty on weekdays.",
    "I paid the bill on the tenth, I think.",
    "It should take about two or three days.",
    "My son turned twelve last week.",
    "We've been customers for nine years.",
    "The form is only one page long.",
    "There were ten people in the waiting room.",
    "The refund was a hundred and twenty dollars.",
    "I'll be home after five today.",
    "The parking was seven pounds for the afternoon.",
    "Room three is where they did the scan.",
]
PLAIN = [
    "Thanks for picking up so quickly.", "Bear with me a moment while I look.",
    "I'm not sure I follow, could you explain?", "That makes sense, thank you.",
    "The letter said something about a change to my plan.",
    "I'll make a note of that on your file.", "Is there anything else I can help with?",
    "Lovely, I'll get that sorted for you now.", "Sorry, the line is a bit noisy.",
    "No worries at all, take your time.", "Could you hold while I check with my manager?",
    "Great, that's all updated for you.",
]
FLOW = [["card", "expiry", "cvv"], ["ssn"], ["dob", "phone"], ["member_id", "dob"],
        ["account"], ["ssn_last4", "phone"], ["card", "cvv"], ["account", "dob"]]


def synth(text, voice, speed, pitch, level_db, tmp):
    """espeak-ng -> telephone band at 8 kHz, float samples at `level_db` dBFS RMS."""
    raw = os.path.join(tmp, "s.wav")
    nb = os.path.join(tmp, "n.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", raw,
                    text], check=True, capture_output=True)
    # -R -D: repeatable, no dither (sox dithers at random by default: the set would differ
    # from run to run, and tiny.en's decodes with it)
    subprocess.run(["sox", "-R", "-D", raw, "-r", str(FS), "-b", "16", nb, "sinc", "300-3400"],
                   check=True, capture_output=True)
    with wave.open(nb) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    # trim espeak's leading/trailing silence
    act = np.nonzero(np.abs(x) > 200)[0]
    if len(act):
        x = x[max(act[0] - 40, 0): act[-1] + 40]
    rms = np.sqrt(np.mean(x ** 2)) + 1e-9
    return x * (10 ** (level_db / 20) * 32767 / rms)


def mulaw_roundtrip(x):
    mu = 255.0
    y = np.clip(x / 32768.0, -1, 1)
    c = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
    q = np.round((c + 1) / 2 * 255) / 255 * 2 - 1
    return np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu * 32768.0


def make_call(idx, r, out_dir, tmp):
    voices = r.sample(VOICES, 2)
    spk = {
        "agent": (voices[0], r.randint(150, 200), r.randint(30, 70), r.uniform(-20, -16)),
        "caller": (voices[1], r.choice([r.randint(110, 140), r.randint(180, 220)]),
                   r.randint(20, 80), r.uniform(-24, -18)),
    }
    audio, labels_speech, labels_ids = [], [], []
    pos = [0]

    def gap(ms):
        audio.append(np.zeros(int(FS * ms / 1000)))
        pos[0] += int(FS * ms / 1000)

    def say(who, text, kind=None, digits=None, read_back=False, numbers=False):
        if not text:
            return
        v, s, p, lv = spk[who]
        x = synth(text, v, s, p, lv, tmp)
        start = pos[0] * 1000 // FS
        audio.append(x)
        pos[0] += len(x)
        end = pos[0] * 1000 // FS
        if kind:
            d = {"start_ms": start, "end_ms": end, "speaker": who, "text": text,
                 "id_type": kind, "digits": digits}
            if read_back:
                d["read_back"] = True
            labels_ids.append(d)
        else:
            labels_speech.append({"start_ms": start, "end_ms": end, "speaker": who,
                                  "text": text, "contains_number_words": numbers})

    gap(600)
    say("agent", r.choice(["Good morning, patient services, how can I help?",
                           "Thanks for calling billing, you're speaking with Sam."]))
    gap(r.randint(400, 900))
    for kinds in [r.choice(FLOW)]:
        for kind in kinds:
            if r.random() < 0.5:
                say("caller", r.choice(EVERYDAY), numbers=True)
                gap(r.randint(400, 900))
                say("agent", r.choice(PLAIN))
                gap(r.randint(400, 900))
            text, digits = identifier(kind, r)
            if kind in VOLUNTEER and r.random() < 0.3:
                say("caller", VOLUNTEER[kind])
            else:
                say("agent", r.choice(ASKS[kind]))
                gap(r.randint(400, 1000))
                lead = r.choice(LEADS)
                say("caller", lead)
                if lead:
                    gap(r.randint(150, 700))
            say("caller", text, kind=kind, digits=digits)
            gap(r.randint(500, 1000))
            if r.random() < 0.4:
                tmpl = r.choice(READBACK)
                before, after = tmpl.split("{}")
                say("agent", before.strip(" ,"))
                gap(120)
                say("agent", text, kind=kind, digits=digits, read_back=True)
                gap(120)
                say("agent", after.strip(" ,."))
                gap(r.randint(400, 800))
                say("caller", r.choice(CONFIRM))
                gap(r.randint(400, 800))
            else:
                say("agent", r.choice(PLAIN))
                gap(r.randint(400, 900))
    say("caller", r.choice(EVERYDAY), numbers=True)
    gap(r.randint(400, 900))
    say("agent", r.choice(PLAIN))
    gap(800)
    x = np.concatenate(audio)
    noise_db = r.uniform(-62, -52)
    x = x + np.random.default_rng(idx).normal(0, 10 ** (noise_db / 20) * 32767, len(x))
    x = np.clip(mulaw_roundtrip(x), -32768, 32767).astype("<i2")
    base = os.path.join(out_dir, f"call_{idx:03d}")
    with wave.open(base + ".wav", "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(FS)
        w.writeframes(x.tobytes())
    meta = {"call_id": f"holdout_{idx:03d}", "set": "holdout", "call_type": "spoken_id",
            "sample_rate": FS,
            "codec": "PCMU", "duration_ms": len(x) * 1000 // FS,
            "voices": {k: {"voice": v[0], "engine": "espeak-ng", "speed": v[1], "pitch": v[2]}
                       for k, v in spk.items()}}
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "speech": labels_speech, "spoken_id": labels_ids,
                   "dtmf_inband": [], "rfc4733_events": [], "rfc4733_packets": [],
                   "negative_control": []}, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--calls", type=int, default=24)
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    r = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.calls):
            make_call(i, r, a.out_dir, tmp)
    print(f"gen_holdout: {a.calls} calls in {a.out_dir} (seed {a.seed})")


if __name__ == "__main__":
    sys.exit(main())
