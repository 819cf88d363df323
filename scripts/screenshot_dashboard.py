"""Screenshot the dashboard over the demo ledger, for the README (docs/img/dashboard.png).

    .venv/bin/python scripts/screenshot_dashboard.py [--out docs/img/dashboard.png]

Writes the demo ledger (``scripts/demo_ledger.py``, ending today) to a
temporary directory, serves the gateway on a loopback port, signs in with the
master key in headless Chromium (Debian's ``chromium`` through Playwright's
Python client; set CHROMIUM to use another binary), and saves a full-page PNG.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_ledger import add_budgets_and_balances, records
from playwright.sync_api import sync_playwright

from tokenomy.config import Settings
from tokenomy.ledger import open_store
from tokenomy.server.app import create_app
from tokenomy.testing import serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
MASTER = "sk-screenshot-master-key"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "demo.db")
        with open_store(db) as store:
            store.migrate()
            recs = records(datetime.now(UTC).date())
            store.insert_records(recs)
            add_budgets_and_balances(store, recs)
        app = create_app(Settings(db=db, master_key=MASTER))
        with serve_in_thread(app) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                args=CHROMIUM_ARGS,
            )
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(url + "/ui")
            page.fill("#key", MASTER)
            page.click("button[type=submit]")
            page.wait_for_selector("#spend-chart[data-drawn=true]")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
