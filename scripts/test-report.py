#!/usr/bin/env python3
"""test-report.py -- counts of every test stage, and where the failures are.

Reads the result files the stages leave in a results directory (stdlib only):
  ctest.xml      ctest --output-junit: one <testcase> per ctest entry, status, output
  <entry>.xml    the entry's own JUnit-style file: Criterion --xml, pytest --junitxml
  <entry>.rc     exit status of a run outside ctest (sanitize.sh pyasan), with
  <entry>.log    its output
An entry with an own file counts its tests; one without (bench smoke, stress,
fuzz, pip) counts as one test. An entry labelled criterion or python without
its file, or a failed entry whose file shows no failure (crash, timeout, exit
status), adds one failed test carrying the entry's output. ran = passed + failed.

  test-report.py stage NAME DIR [--group G]   print NAME's rows; record them in
                                              $FS_REPORT_DIR (if set); exit 1 on failure
  test-report.py close GROUP RC               after a group of stages: a failed record
                                              if GROUP recorded nothing, or exited RC != 0
                                              with no failing test recorded
  test-report.py summary                      failures with output, then the table over
                                              all records; exit 1 on failure or if empty
"""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

MAX_LINES = 60          # of one failure's text; head and tail are kept
MAX_DETAILED = 20       # failures the summary shows with their text


def clip(text, max_lines=MAX_LINES):
    lines = [l if len(l) <= 300 else l[:300] + " ..." for l in text.strip("\n").splitlines()]
    if len(lines) > max_lines:
        head = max_lines // 3
        lines = (lines[:head] + ["    ... %d lines left out ..." % (len(lines) - max_lines)]
                 + lines[head - max_lines:])
    return "\n".join(lines)


def junit_cases(path):
    """(kind, [(name, outcome, text)]) of a Criterion or pytest file."""
    root = ET.parse(path).getroot()
    with open(path, encoding="utf-8", errors="replace") as f:
        kind = "criterion" if "Criterion" in f.read(300) else "pytest"
    cases = []
    for suite in root.iter("testsuite"):
        for tc in suite.iter("testcase"):
            if kind == "criterion":
                name = "%s::%s" % (suite.get("name"), tc.get("name"))
            else:
                name = "%s::%s" % (tc.get("classname", ""), tc.get("name"))
            bad = [e for e in tc if e.tag in ("failure", "error")]
            if bad:
                parts = []
                for e in bad:
                    parts.append("%s: %s" % (e.tag, e.get("message", "")))
                    if (e.text or "").strip():
                        parts.append(e.text)
                for e in tc:   # pytest's own "Captured Out/Err" headers are in the text
                    if e.tag in ("system-out", "system-err") and (e.text or "").strip():
                        parts.append(e.text)
                cases.append((name, "failed", "\n".join(parts)))
            elif tc.find("skipped") is not None:
                cases.append((name, "skipped", ""))
            else:
                cases.append((name, "passed", ""))
    return kind, cases


def criterion_block(output, name):
    """The lines Criterion (and the test's raw stderr) printed up to '[FAIL] name'."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("[FAIL] %s:" % name):
            j = i
            while j > 0 and not re.match(r"\[(FAIL|PASS|SKIP)\] ", lines[j - 1]):
                j -= 1
            return "\n".join(lines[j:i + 1])
    return ""


def entries(d):
    """[(name, passed, output, labels)] of the ctest entries and .rc runs in d."""
    out = []
    ct = os.path.join(d, "ctest.xml")
    if os.path.exists(ct):
        for tc in ET.parse(ct).getroot().iter("testcase"):
            status = tc.get("status")   # run, fail, notrun (not built, ...), disabled
            text = "".join(e.text or "" for e in tc if e.tag == "system-out")
            for e in tc:
                if e.tag in ("failure", "skipped") and e.get("message"):
                    text += "\n[ctest: %s]" % e.get("message")
            labels = [p.get("value") for p in tc.iter("property") if p.get("name") == "cmake_labels"]
            labels = ";".join(labels).split(";") + (["disabled"] if status == "disabled" else [])
            out.append((tc.get("name"), status in ("run", "disabled"), text, labels))
    for f in sorted(os.listdir(d)):
        if f.endswith(".rc"):
            name = f[:-3]
            with open(os.path.join(d, f)) as fh:
                rc = fh.read().strip()
            log = os.path.join(d, name + ".log")
            text = ""
            if os.path.exists(log):
                with open(log, errors="replace") as fh:
                    text = fh.read()
            out.append((name, rc == "0", text + "\n[exit status %s]" % rc,
                        ["python" if name.startswith("python-") else ""]))
    return out


def analyse(d):
    """Rows {part: [passed, failed, skipped]} and failures [(name, text)] of one dir."""
    rows, failures = {}, []
    if not os.path.isdir(d):
        return rows, failures
    for name, ok, output, labels in entries(d):
        own = os.path.join(d, name + ".xml")
        cases, kind = [], None
        if os.path.exists(own):
            try:
                kind, cases = junit_cases(own)
            except ET.ParseError as e:
                cases = [(name, "failed", "unreadable %s: %s" % (own, e))]
        elif "criterion" in labels or "python" in labels:
            cases = [(name + " (no result file)", "failed", "no %s; the entry's output:\n%s"
                      % (own, output[-20000:]))]
        if kind == "criterion":
            part = "C tests (Criterion)"
        elif kind == "pytest" or "python" in labels:
            part = "pytest " + name.split("-", 1)[-1]
        elif "criterion" in labels:
            part = "C tests (Criterion)"
        else:
            part = "other ctest entries"
        if "disabled" in labels:
            cases = [(name, "skipped", "")]
        elif not cases:
            cases = [(name, "passed" if ok else "failed", output)]
        elif not ok and all(o != "failed" for _, o, _ in cases):
            cases.append((name + " (process)", "failed",
                          "the entry failed, but no test in %s did; its output:\n%s"
                          % (os.path.basename(own), output[-20000:])))
        r = rows.setdefault(part, [0, 0, 0])
        for case, outcome, text in cases:
            r[("passed", "failed", "skipped").index(outcome)] += 1
            if outcome == "failed":
                if kind == "criterion" and not case.endswith("(process)"):
                    block = criterion_block(output, case)
                    text = text + ("\n---- test output ----\n" + block if block else "")
                label = case if case.startswith(name) else "%s: %s" % (name, case)
                failures.append((label, clip(text)))
    return rows, failures


def report_dir():
    return os.environ.get("FS_REPORT_DIR") or None


def write_record(rec):
    d = report_dir()
    if not d:
        return
    os.makedirs(d, exist_ok=True)
    n = len([f for f in os.listdir(d) if f.endswith(".json")])
    path = os.path.join(d, "%02d-%s.json" % (n, re.sub(r"[^\w.-]", "_", rec["stage"])))
    with open(path, "w") as f:
        json.dump(rec, f, indent=1)


def records():
    d = report_dir()
    if not d or not os.path.isdir(d):
        return []
    out = []
    for f in sorted(os.listdir(d)):
        if f.endswith(".json"):
            with open(os.path.join(d, f)) as fh:
                out.append(json.load(fh))
    return out


def table(recs):
    head = ("stage", "part", "ran", "passed", "failed", "skipped")
    body, tot = [], [0, 0, 0]
    for rec in recs:
        for part, (p, f, s) in rec["rows"]:
            body.append((rec["stage"], part, p + f, p, f, s))
            tot = [tot[0] + p, tot[1] + f, tot[2] + s]
        if not rec["rows"]:
            body.append((rec["stage"], "NO RESULTS", 0, 0, 0, 0))
    rows = [head] + body + [("total", "", tot[0] + tot[1], tot[0], tot[1], tot[2])]
    w = [max(len(str(r[i])) for r in rows) for i in range(6)]
    fmt = lambda r: "  ".join(str(c).ljust(w[i]) if i < 2 else str(c).rjust(w[i])
                              for i, c in enumerate(r))
    rule = "  ".join("-" * x for x in w)
    lines = [fmt(head), rule] + [fmt(r) for r in body] + [rule, fmt(rows[-1])]
    return "\n".join(lines), tot


def failed(rec):
    return not rec["rows"] or any(f for _, (p, f, s) in rec["rows"])


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "stage" and len(argv) in (4, 6):
        stage, d = argv[2], argv[3]
        group = argv[5] if len(argv) == 6 and argv[4] == "--group" else stage
        rows, failures = analyse(d)
        rec = {"stage": stage, "group": group, "dir": d,
               "rows": sorted(rows.items(), key=lambda kv: (kv[0].startswith("other"), kv[0])),
               "failures": failures}
        write_record(rec)
        print("\n[report] %s (%s)" % (stage, d))
        print(table([rec])[0])
        for name, _ in failures:
            print("[report] FAILED %s" % name)
        if not rows:
            print("[report] no results in %s: the stage did not run its tests" % d)
        return 1 if failed(rec) else 0
    if cmd == "close" and len(argv) == 4:
        group, rc = argv[2], argv[3]
        mine = [r for r in records() if r["group"] == group]
        why = None
        if not mine:
            why = "the stage exited with status %s and recorded no results" % rc
        elif rc != "0" and not any(failed(r) for r in mine):
            why = "the stage exited with status %s, but no test failed (set-up or build?)" % rc
        if why:
            write_record({"stage": group, "group": group, "dir": "",
                          "rows": [["stage exit status", [0, 1, 0]]],
                          "failures": [[group + ": exit status " + rc, why + "; see its output above"]]})
        return 0
    if cmd == "summary" and len(argv) == 2:
        recs = records()
        bad = [(r["stage"], n, t) for r in recs for n, t in r["failures"]]
        if bad:
            print("\n======== failures (%d) ========" % len(bad))
            for i, (stage, name, text) in enumerate(bad):
                if i < MAX_DETAILED:
                    print("\n---- [%s] %s\n%s" % (stage, name, text))
                else:
                    print("---- [%s] %s (output left out: see the stage's log)" % (stage, name))
        text, tot = table(recs)
        print("\n======== test summary ========")
        print(text)
        if not recs:
            print("no stage recorded results ($FS_REPORT_DIR=%s)" % report_dir())
        ok = recs and not any(failed(r) for r in recs)
        print("RESULT: %s" % ("all passed" if ok else "FAILED"))
        return 0 if ok else 1
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
