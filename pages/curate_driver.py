"""Headless driver of the Curate page for the reliability campaign (``wsseg.bench.reliability_app``).

    python pages/curate_driver.py PROJECT SEED APP

Runs the real app (``APP``, then ``pages/curate.py``) with Streamlit's AppTest, no browser, and
accepts or rejects the mask the page shows, again and again. After each click it prints
``ack <mask id> <status>`` once the page, rerun, counts the decision; ``ready`` first, ``done`` when
nothing is left. The campaign kills this process with SIGKILL at a random moment. Not a page: app.py
does not register it.
"""

from __future__ import annotations

import random
import re
import sys

import streamlit.logger
from streamlit.testing.v1 import AppTest


def _decided(at: AppTest) -> int:
    """Accepted plus rejected masks, as the page's queue caption counts them."""
    return sum(int(n) for n, _ in re.findall(r"(\d+) (accepted|rejected)", at.caption[0].value))


def main(root: str, seed: int, app: str) -> None:
    streamlit.logger.set_log_level("error")  # AppTest's bare-mode warnings
    at = AppTest.from_file(app, default_timeout=60)
    at.session_state["project_root"] = root
    at.run()
    at = at.switch_page("pages/curate.py").run()
    rng = random.Random(seed)
    print("ready", flush=True)
    while at.get("image"):
        mask_id = int(at.get("image")[0].captions[0].split()[1])
        status = rng.choice(["accepted", "rejected"])
        before = _decided(at)
        at.button(key="curate_accept" if status == "accepted" else "curate_reject").click().run()
        if at.exception or _decided(at) != before + 1:
            sys.exit(f"the page did not take the decision on mask {mask_id}")
        print(f"ack {mask_id} {status}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
