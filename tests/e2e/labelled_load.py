"""Traffic whose ground truth arrives later, the way it does in production (I/O).

``LabelledLoad`` is tests/e2e/real_node.py's ServiceLoad (rows to a Service's ClusterIP from the
host, fresh connections, so kube-proxy picks the Pod) whose every answered request is labelled
``delay`` seconds later: the true label goes, with the answer's id, to the feedback endpoint of
the same Service, so it lands on any Pod of any track, and the server that answered must be
found from the id alone.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import requests

from tests.e2e.real_node import ServiceLoad, post_infer


@dataclass
class LabelledLoad(ServiceLoad):
    """``rows`` carry the true label in their last column; it is never sent with the request."""

    delay: float = 2.0  # seconds between an answer and its label
    labels: Counter[str] = field(default_factory=Counter)  # the feedback endpoint's matched/unmatched
    feedback_codes: Counter[int] = field(default_factory=Counter)
    _due: deque[tuple[float, str, float]] = field(default_factory=deque)
    _labeller: threading.Thread | None = None

    def start(self) -> LabelledLoad:
        super().start()
        self._labeller = threading.Thread(target=self._label, daemon=True)
        self._labeller.start()
        return self

    def _one(self, row: np.ndarray) -> tuple[int, str | None, str | None]:
        features, label = row[:, :-1], float(row[0, -1])
        try:
            resp = post_infer(self.address, self.name, features)
            if resp.status_code != 200:
                return resp.status_code, None, f"{resp.status_code}: {resp.text[:200]}"
            answer = resp.json()
            with self._lock:
                self._due.append((time.monotonic() + self.delay, answer["id"], label))
            return 200, answer["model_version"], None
        except (requests.RequestException, ValueError, KeyError) as e:
            return 0, None, f"{type(e).__name__}: {e}"

    def _label(self) -> None:
        """Every 0.2 s, the labels now due in one request (a list body), as a label feed would."""
        while not self._stop.wait(0.2):
            now, batch = time.monotonic(), []
            with self._lock:
                while self._due and self._due[0][0] <= now:
                    _, request_id, label = self._due.popleft()
                    batch.append({"id": request_id, "labels": [int(label)]})
            if batch:
                self._send(batch)

    def _send(self, batch: list[dict]) -> None:
        try:
            resp = requests.post(
                f"http://{self.address}/v2/models/{self.name}/feedback",
                json=batch,
                headers={"Connection": "close"},
                timeout=10,
            )
        except requests.RequestException as e:
            with self._lock:
                self.feedback_codes[0] += 1
                self.failures.append(f"feedback: {type(e).__name__}: {e}")
            return
        with self._lock:
            self.feedback_codes[resp.status_code] += 1
            if resp.status_code in (200, 404):
                answer = resp.json()
                self.labels["matched"] += int(answer.get("matched", 0))
                self.labels["unmatched"] += int(answer.get("unmatched", 0))
            else:
                self.failures.append(f"feedback {resp.status_code}: {resp.text[:200]}")

    def stop(self) -> LabelledLoad:
        super().stop()
        if self._labeller is not None:
            self._labeller.join(timeout=15)
        return self
