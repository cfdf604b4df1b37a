"""Time the README's two commands from a fresh clone, as a newcomer runs them, and record them.

    python bench/suite_times.py test       # git clone . → make test (CI=true), junit XML of the run
    python bench/suite_times.py figures    # git clone . → make figures (full size, empty run cache);
                                           # its figures/ then replace this checkout's

Writes ``bench/results/suite_<command>.json``: the date, the commit, the machine's CPU count,
the wall seconds of the whole command (setup included) and, for ``test``, the counts and
durations pytest wrote into its junit XML (passed, failed, skipped, the seconds of the tests
marked ``ray`` and of the notebook tests) — never parsed from the console. The README's
generated sections quote these files (``python -m bnvae_core docs``).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def junit_summary(path: Path) -> dict:
    """Counts and seconds from a pytest junit XML file."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = suite.findall("testcase")

    def seconds(pred) -> float:
        return round(sum(float(c.get("time", 0)) for c in cases if pred(c)), 1)
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return {"tests": len(cases), "passed": len(cases) - failed - skipped, "failed": failed, "skipped": skipped,
            "pytest_s": round(float(suite.get("time", 0)), 1),
            "ray_tests_s": seconds(lambda c: c.get("name", "").startswith("test_ray")
                                              or c.get("classname", "").endswith("test_ray_cluster")),
            "notebook_tests_s": seconds(lambda c: c.get("classname", "").endswith("test_notebooks"))}


def main(command: str) -> int:
    if command not in ("test", "figures"):
        print("usage: python bench/suite_times.py test|figures", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bnvae-fresh-") as tmp:
        clone, junit = Path(tmp) / "fresh", Path(tmp) / "junit.xml"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        env = {**os.environ, "BNVAE_CACHE": str(Path(tmp) / "cache")}
        if command == "test":
            env["PYTEST_ADDOPTS"] = f"--junitxml={junit}"
        t0 = time.perf_counter()
        rc = subprocess.run(["make", command], cwd=clone, env=env).returncode
        record = {"command": f"make {command}", "date": time.strftime("%Y-%m-%d"), "commit": commit,
                  "cpus": os.cpu_count(), "exit_status": rc, "wall_s": round(time.perf_counter() - t0, 1)}
        if command == "test" and junit.is_file():
            record.update(junit_summary(junit))
        if command == "figures" and rc == 0:          # the fresh run's figures are the ones to commit
            shutil.rmtree(REPO / "figures", ignore_errors=True)
            shutil.copytree(clone / "figures", REPO / "figures")
    out = REPO / "bench" / "results" / f"suite_{command}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
