"""Print a per-test table and one closing line ('compat: N passed, N failed, N skipped') from the
JUnit XML files that pytest and node's test runner wrote. Usage: summary.py NAME=FILE:RC ..."""

import sys
import xml.etree.ElementTree as ET


def cases(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        return None, str(e)
    out = []
    for tc in root.iter("testcase"):
        name = tc.get("name", "?")
        cls = tc.get("classname", "")
        if cls and cls != "test":
            name = f"{cls.rsplit('.', 1)[-1]}::{name}"
        if tc.find("failure") is not None or tc.find("error") is not None:
            el = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
            msg = (el.get("message") or (el.text or "")).strip().splitlines()
            status, why = "FAIL", (msg[0][:160] if msg else "")
        elif tc.find("skipped") is not None:
            status, why = "SKIP", (tc.find("skipped").get("message") or "")[:160]
        else:
            status, why = "pass", ""
        out.append((name, status, float(tc.get("time") or 0), why))
    return out, None


def main():
    passed = failed = skipped = 0
    for arg in sys.argv[1:]:
        label, rest = arg.split("=", 1)
        path, rc = rest.rsplit(":", 1)
        rc = int(rc)
        print(f"\n== {label} (exit code {rc})")
        rows, err = cases(path)
        if rows is None:
            print(f"   no results ({err})")
            rows = []
        for name, status, t, why in rows:
            print(f"   {status:4}  {t:7.1f}s  {name}" + (f"\n               {why}" if why else ""))
        p = sum(1 for r in rows if r[1] == "pass")
        f = sum(1 for r in rows if r[1] == "FAIL")
        s = sum(1 for r in rows if r[1] == "SKIP")
        if rc != 0 and f == 0:
            print(f"   FAIL  {label} runner exited with code {rc} without a failing test (setup/teardown or collection error)")
            f = 1
        if not rows and rc == 0:
            print(f"   FAIL  {label} ran no test")
            f = 1
        passed, failed, skipped = passed + p, failed + f, skipped + s
    print()
    print(f"compat: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
