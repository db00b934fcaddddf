"""``make report-screenshot``: render a report page to PNG with a headless browser, if one is installed.

``python -m migrator.report.screenshot [REPORT.html] [OUT.png]``: without REPORT, the newest
``migrator-report-*.html`` in the current directory; without OUT, REPORT with ``.png``. The
browser is the first of ``$BROWSER``, ``chromium``, ``chromium-browser``, ``google-chrome``,
``google-chrome-stable`` found on ``PATH`` (Debian's ``chromium`` package installs
``/usr/bin/chromium``). With none installed this is not a failure: the target is optional, so it
says so and exits 0. Exit 2 when there is no report to render, 1 when the browser fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 120.0


def find_browser() -> str | None:
    """The path of a headless-capable Chromium-family browser, or None."""
    candidates = [os.environ["BROWSER"]] if os.environ.get("BROWSER") else []
    for name in (*candidates, *BROWSERS):
        found = shutil.which(name)
        if found:
            return found
    return None


def newest_report(directory: Path) -> Path | None:
    reports = sorted(directory.glob("migrator-report-*.html"), key=lambda p: p.stat().st_mtime)
    return reports[-1] if reports else None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    report = Path(args[0]) if args and args[0] else newest_report(Path.cwd())
    if report is None or not report.is_file():
        where = report if report is not None else f"migrator-report-*.html in {Path.cwd()}"
        print(f"report-screenshot: no report at {where}; write one with `migrator report --plan P -o "
              "report.html` and pass REPORT=report.html", file=sys.stderr)
        return 2
    out = Path(args[1]) if len(args) > 1 and args[1] else report.with_suffix(".png")
    browser = find_browser()
    if browser is None:
        print("report-screenshot: skipped, no headless browser installed (looked for $BROWSER, "
              f"{', '.join(BROWSERS)}); on Debian: apt-get install chromium. Open {report} in any browser instead.")
        return 0
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1280,2000", f"--screenshot={out.resolve()}", report.resolve().as_uri()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"report-screenshot: {browser} failed: {exc}", file=sys.stderr)
        return 1
    if done.returncode != 0 or not out.exists():
        print(f"report-screenshot: {browser} exited {done.returncode}: {done.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    print(f"report-screenshot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
