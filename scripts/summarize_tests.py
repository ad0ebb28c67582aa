#!/usr/bin/env python3
"""Summarizes lit's xunit results: lists failures and skipped tests (with the
reason lit gives, e.g. a missing optional dependency) and ends with the line
`N passed, N failed[, N skipped]`. Exit status 1 when a test failed or none ran."""

import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        print(f"summarize_tests: cannot read lit results {path}: {err}")
        print("0 passed, 1 failed")
        return 1
    passed, failed, skipped = 0, [], []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}/{case.get('name', '')}"
        failure = case.find("failure")
        skip = case.find("skipped")
        if failure is not None:
            failed.append(name)
        elif skip is not None:
            skipped.append((name, skip.get("message", "skipped")))
        else:
            passed += 1
    if failed:
        print("Failed tests:")
        for name in failed:
            print(f"  {name}")
    if skipped:
        print("Skipped tests:")
        for name, reason in skipped:
            print(f"  {name}: {reason}")
    line = f"{passed} passed, {len(failed)} failed"
    if skipped:
        line += f", {len(skipped)} skipped"
    print(line)
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/test-results.xml"))
