#!/usr/bin/env python3
"""Score eval_dev JSON lines against the dev-corpus labels.

usage: score_dev.py ids.jsonl [CORPUS_DIR]   (ids/tile modes: per spoken_id label)
Digits: numerals and number words in the words overlapping the label, turned into a digit string.
recall = multiset overlap / label digits (dob labels are YYYYMMDD, spoken in another order);
hit = some numeric word overlaps the label span (what masking needs);
start/end error = first/last numeric word overlapping the label vs the label's start/end.
"""
import collections, json, re, statistics, sys

UNITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
         "six": "6", "seven": "7", "eight": "8", "nine": "9"}
TEENS = {"ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15",
         "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19"}
TENS = {"twenty": "2", "thirty": "3", "forty": "4", "fifty": "5", "sixty": "6", "seventy": "7", "eighty": "8", "ninety": "9"}
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
ORD = {"first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6", "seventh": "7",
       "eighth": "8", "ninth": "9", "tenth": "10", "eleventh": "11", "twelfth": "12", "thirteenth": "13",
       "fourteenth": "14", "fifteenth": "15", "sixteenth": "16", "seventeenth": "17", "eighteenth": "18",
       "nineteenth": "19", "twentieth": "20", "thirtieth": "30"}
NUMERIC = set(UNITS) | set(TEENS) | set(TENS) | set(ORD) | set(MONTHS) | {"double", "triple", "hundred", "thousand"}


def norm(w):
    return re.sub(r"[^a-z0-9]", "", w.lower())


def is_numeric(w):
    n = norm(w)
    return bool(re.search(r"\d", n)) or any(p in NUMERIC for p in re.split(r"-", w.lower().strip(".,?!")))


def digits_of(words):
    toks = []
    for w in words:
        toks += [norm(p) for p in re.split(r"[-\s]", w) if norm(p)]
    out, i, rep = [], 0, 1
    while i < len(toks):
        t = toks[i]
        if t in ("double", "triple"):
            rep = 2 if t == "double" else 3
            i += 1
            continue
        if re.fullmatch(r"\d+(st|nd|rd|th)?", t):
            d = re.sub(r"\D", "", t)
        elif t in UNITS:
            d = UNITS[t]
        elif t in TEENS:
            d = TEENS[t]
        elif t in ORD:
            d = ORD[t]
        elif t in TENS:
            nxt = toks[i + 1] if i + 1 < len(toks) else ""
            if nxt in UNITS and nxt not in ("oh", "o", "zero"):
                d = TENS[t] + UNITS[nxt]
                i += 1
            else:
                d = TENS[t] + "0"
        elif t in MONTHS:
            d = "%02d" % (MONTHS.index(t) + 1)
        else:
            d = ""
        out.append(d * rep if len(d) == 1 else d)
        rep = 1
        i += 1
    return "".join(out)


def main():
    rows = [json.loads(l) for l in open([a for a in sys.argv[1:] if not a.startswith("-")][0])]
    pos = [a for a in sys.argv[1:] if not a.startswith("-")]
    corpus = pos[1] if len(pos) > 1 else "/work/shared/eval/data/dev"
    mode = rows[0]["mode"]
    audio = sum((r["seg_end_ms"] - r["seg_start_ms"]) / 1000 for r in rows)
    cpu = sum(r["cpu_s"] for r in rows)
    enc = statistics.mean(r["encode_ms"] for r in rows)
    gen = statistics.mean(r["generate_ms"] for r in rows)
    print(f"{mode} {rows[0]['arg']}: {len(rows)} segments, {audio:.1f} s audio, {cpu:.2f} CPU-s = {cpu / audio:.3f} CPU-s/audio-s, "
          f"{cpu / len(rows):.2f} CPU-s/segment; mean encode {enc:.0f} ms, generate {gen:.0f} ms (wall)")
    words = collections.defaultdict(list)
    for r in rows:
        words[r["call"]] += r["words"]
    labels = []
    for call in sorted(words):
        labels += [(call, l) for l in json.load(open(f"{corpus}/{call}.json"))["spoken_id"]]
    if mode == "ids":
        labels = [(r["call"], r["label"]) for r in rows]
    rec, exact, hits, serr, eerr, by_type = [], 0, 0, [], [], collections.defaultdict(list)
    for call, l in labels:
        if mode == "ids":
            ws = next(r["words"] for r in rows if r["call"] == call and r["label"] == l)
        else:
            ws = words[call]
        over = [w for w in ws if w["end_ms"] > l["start_ms"] - 300 and w["start_ms"] < l["end_ms"] + 300]
        num = [w for w in over if is_numeric(w["text"])]
        got = digits_of([w["text"] for w in num])
        want = l["digits"]
        c = sum((collections.Counter(got) & collections.Counter(want)).values())
        rec.append(c / len(want))
        by_type[l["id_type"]].append(c / len(want))
        exact += want in got
        if num:
            hits += 1
            serr.append(num[0]["start_ms"] - l["start_ms"])
            eerr.append(num[-1]["end_ms"] - l["end_ms"])
        if "-v" in sys.argv:
            print(f"  {call} {l['id_type']:<10} want {want:<16} got {got:<16} | {l['text']!r} -> {' '.join(w['text'] for w in over)!r}")
    n = len(labels)
    print(f"  spoken_id labels {n}: numeric word over span {hits}/{n}; digit recall (multiset) {statistics.mean(rec):.3f}; "
          f"digits in order {exact}/{n}")
    print("  recall by type: " + ", ".join(f"{k} {statistics.mean(v):.2f} (n={len(v)})" for k, v in sorted(by_type.items())))
    if serr:
        a = sorted(abs(x) for x in serr)
        print(f"  start error ms (first numeric word - label start): median {statistics.median(serr):+.0f}, |err| median {statistics.median(a):.0f}, "
              f"p90 {a[int(0.9 * (len(a) - 1))]:.0f}, max {a[-1]:.0f}")
        b = sorted(abs(x) for x in eerr)
        print(f"  end error ms (last numeric word - label end): median {statistics.median(eerr):+.0f}, |err| median {statistics.median(b):.0f}, "
              f"p90 {b[int(0.9 * (len(b) - 1))]:.0f}, max {b[-1]:.0f}")


if __name__ == "__main__":
    main()
