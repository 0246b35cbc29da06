#!/usr/bin/env python3
"""A strict checker for the Prometheus text exposition format (version 0.0.4), for the
tests of node/metrics.c. Reads the text from FILE (or stdin); prints "ok: F families, S
samples" and exits 0, or prints "line N: problem" for each problem and exits 1.

Stricter than Prometheus itself, on purpose, so that what rdmesh serves parses under
any scraper:
  - metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
    and do not start with "__"; label values are quoted with only \\ \" \\n escapes;
  - every sample belongs to a family that has exactly one # HELP and one # TYPE line,
    both before its first sample; a family's lines are contiguous (never interleaved
    with another family's); no label name twice in a sample, no series twice;
  - counters are named *_total and are >= 0; a summary's samples are NAME{quantile}
    with 0 <= quantile <= 1, NAME_count and NAME_sum (no quantile label there);
  - the text ends with a newline.
"""
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "summary", "histogram", "untyped"}
SUFFIXES = {"summary": ("_count", "_sum"), "histogram": ("_bucket", "_count", "_sum")}


def parse_value(s):
    if s in ("NaN", "+Inf", "-Inf", "Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ValueError("bad value %r" % s)
    return float(s)


def parse_labels(s, pos):
    """Parses {a="x",b="y"} starting at s[pos] == '{'; returns (dict, pos after '}')."""
    labels = {}
    pos += 1
    while True:
        if pos < len(s) and s[pos] == "}":
            return labels, pos + 1
        m = LABEL.match(s, pos)
        if not m:
            raise ValueError("bad label name at column %d" % (pos + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise ValueError("reserved label name %s" % name)
        if name in labels:
            raise ValueError("label %s twice" % name)
        pos = m.end()
        if s[pos:pos + 2] != '="':
            raise ValueError("expected =\" after label %s" % name)
        pos += 2
        val = []
        while True:
            if pos >= len(s):
                raise ValueError("unterminated value of label %s" % name)
            c = s[pos]
            if c == "\\":
                nxt = s[pos + 1:pos + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ValueError("bad escape \\%s in label %s" % (nxt, name))
                val.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif c == '"':
                pos += 1
                break
            elif c == "\n":
                raise ValueError("raw newline in label %s" % name)
            else:
                val.append(c)
                pos += 1
        labels[name] = "".join(val)
        if pos < len(s) and s[pos] == ",":
            pos += 1
            continue
        if pos < len(s) and s[pos] == "}":
            return labels, pos + 1
        raise ValueError("expected , or } after label %s" % name)


def check(text):
    errors = []
    fams = {}  # name -> {"help": bool, "type": str|None, "samples": int}
    order = []  # families in the order their lines appear
    closed = set()  # families whose block has ended
    series = set()
    samples = 0
    current = None

    def enter(fam, n):
        nonlocal current
        if fam != current:
            if fam in closed or (fam in fams and fams[fam]["samples"] and current != fam):
                errors.append("line %d: family %s interleaved with another" % (n, fam))
            if current is not None:
                closed.add(current)
            current = fam

    if text and not text.endswith("\n"):
        errors.append("line %d: no newline at the end" % (text.count("\n") + 1))
    for n, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else
                             text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not NAME.fullmatch(parts[2]):
                    errors.append("line %d: bad metric name in # %s" % (n, parts[1]))
                    continue
                fam = parts[2]
                f = fams.setdefault(fam, {"help": False, "type": None, "samples": 0})
                if fam not in order:
                    order.append(fam)
                enter(fam, n)
                if f["samples"]:
                    errors.append("line %d: # %s %s after its samples" % (n, parts[1], fam))
                if parts[1] == "HELP":
                    if f["help"]:
                        errors.append("line %d: second # HELP for %s" % (n, fam))
                    f["help"] = True
                    h = parts[3] if len(parts) > 3 else ""
                    if re.search(r"\\[^\\n]", h.replace("\\\\", "")):
                        errors.append("line %d: bad escape in # HELP %s" % (n, fam))
                else:
                    if f["type"]:
                        errors.append("line %d: second # TYPE for %s" % (n, fam))
                    t = parts[3].strip() if len(parts) > 3 else ""
                    if t not in TYPES:
                        errors.append("line %d: unknown type %r for %s" % (n, t, fam))
                    f["type"] = t
            continue
        m = NAME.match(line)
        if not m:
            errors.append("line %d: bad metric name" % n)
            continue
        name = m.group(0)
        pos = m.end()
        labels = {}
        try:
            if pos < len(line) and line[pos] == "{":
                labels, pos = parse_labels(line, pos)
            rest = line[pos:]
            if not rest.startswith(" "):
                raise ValueError("expected a space before the value")
            fields = rest.split(" ")[1:]
            if len(fields) not in (1, 2) or "" in fields:
                raise ValueError("expected VALUE [TIMESTAMP]")
            value = parse_value(fields[0])
            if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
                raise ValueError("bad timestamp %r" % fields[1])
        except ValueError as e:
            errors.append("line %d: %s" % (n, e))
            continue
        # Which family: the name itself, or a summary/histogram it is a part of.
        fam = name
        if name not in fams or fams[name]["type"] is None:
            for base_t, sufs in SUFFIXES.items():
                for suf in sufs:
                    base = name[:-len(suf)]
                    if name.endswith(suf) and base in fams and fams[base]["type"] == base_t:
                        fam = base
        f = fams.get(fam)
        if not f or not f["type"]:
            errors.append("line %d: sample %s before (or without) its # TYPE" % (n, name))
            continue
        if not f["help"]:
            errors.append("line %d: sample %s without # HELP" % (n, name))
        enter(fam, n)
        f["samples"] += 1
        samples += 1
        t = f["type"]
        if t == "counter":
            if not name.endswith("_total"):
                errors.append("line %d: counter %s not named *_total" % (n, name))
            if not value >= 0:
                errors.append("line %d: counter %s is negative" % (n, name))
        if t == "summary":
            if name == fam:
                q = labels.get("quantile")
                try:
                    qv = float(q) if q is not None else None
                except ValueError:
                    qv = None
                if qv is None or math.isnan(qv) or not 0 <= qv <= 1:
                    errors.append("line %d: summary %s without a quantile in [0,1]" % (n, name))
            elif "quantile" in labels:
                errors.append("line %d: %s has a quantile label" % (n, name))
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            errors.append("line %d: series %s%s twice" % (n, name, labels))
        series.add(key)
    for fam in order:
        f = fams[fam]
        if not f["type"]:
            errors.append("family %s: # HELP without # TYPE" % fam)
    return errors, len(order), samples


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "-"
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    errors, nfam, nsamples = check(text)
    if errors:
        for e in errors:
            print(e)
        return 1
    if not nsamples:
        print("no samples")
        return 1
    print("ok: %d families, %d samples" % (nfam, nsamples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
