"""The trust issue's attacks, replayed against a real `deskline serve` on loopback; prints figures.

    python bench/trust_attacks.py            # SQLite in a temp folder, default quotas

1. 300 new conversations from one address, as fast as one client can: how many are refused.
2. 200 messages in one conversation as fast as one client can: how many are refused.
3. An anonymous visitor asks to unlock, retry and refund: how many are told to sign in (goal 3).
4. Wrong agent keys: how many are refused before the hash runs; known vs unknown key-id timing.
Every request goes to 127.0.0.1 only, bounded in count.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from deskline.testing.cluster import ServeCluster


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="deskline-attack-"))
    db = f"sqlite:///{tmp}/desk.db"
    env = {"DESKLINE_DATABASE_URL": db, "DESKLINE_LOG_LEVEL": "error"}
    added = subprocess.run([sys.executable, "-m", "deskline.cli", "agents", "add", "dana"],
                           env={**os.environ, **env}, capture_output=True, text=True, check=True)
    key = added.stdout.strip()
    with ServeCluster(1, env=env, log_dir=tmp) as cluster, httpx.Client(base_url=cluster.urls[0], timeout=30) as http:
        created = http.post("/v1/conversations").json()
        headers = {"Authorization": f"Bearer {created['token']}"}
        sent: Counter[int] = Counter()
        started = time.perf_counter()
        for i in range(200):
            sent[http.post(f"/v1/conversations/{created['id']}/messages", headers=headers,
                           json={"text": f"is the app down? #{i}"}).status_code] += 1
        print(f"2. 200 messages in one conversation in {time.perf_counter() - started:.1f} s: {dict(sent)}")
        anon = http.post("/v1/conversations").json()
        asked = [http.post(f"/v1/conversations/{anon['id']}/messages", json={"text": text},
                           headers={"Authorization": f"Bearer {anon['token']}"}).json()["reply"]
                 for text in ("my account is locked, please unlock it", "please retry PAY-3002",
                              "please refund charge CH-2003")]
        signed_in = sum("sign in" in reply for reply in asked)
        print(f"3. an anonymous visitor asked to unlock, retry and refund: {signed_in} of 3 answered 'sign in first'")
        started = time.perf_counter()
        opened = Counter(http.post("/v1/conversations").status_code for _ in range(300))
        print(f"1. 300 more conversations from one address in {time.perf_counter() - started:.1f} s: {dict(opened)}")

        wrong: Counter[int] = Counter()
        timed: dict[str, list[float]] = {"known": [], "unknown": []}
        known_id = key[4:16]  # dka_<12 hex id>_<43-character secret>
        for i in range(500):  # known and unknown ids interleaved; only answers that ran the hash are timed
            kind = "known" if i % 2 else "unknown"
            kid = known_id if kind == "known" else f"{i:012x}"
            t0 = time.perf_counter()
            r = http.get("/v1/agents/me", headers={"Authorization": f"Bearer dka_{kid}_{'A' * 40}{i:03d}"})
            if r.status_code == 401:
                timed[kind].append((time.perf_counter() - t0) * 1000)
            wrong[r.status_code] += 1
        medians = {k: round(statistics.median(v), 1) for k, v in timed.items() if v}
        print(f"4. 500 wrong agent keys from one address: {dict(wrong)}; median ms of the hashed ones {medians}")


if __name__ == "__main__":
    main()
