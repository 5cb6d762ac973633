"""How many images/s Beam's cross-process proxy can carry: the transport of `clip_score.share_model`.

    python bench/share_proxy.py [--clients 1 2 3] [--kb 40] [--batches 20]

With a shared model, worker processes send each batch's JPEG bytes and captions to the one process that
holds the model (Beam's MultiProcessShared) and get the scores back. This measures that transport alone:
N client processes each send `--batches` batches of 512 random payloads of `--kb` KB with a caption to a
shared object that answers with one float per image (no decoding, no model), all at once. It runs on the
CPU; the images/s bound how fast a shared model can be fed on this machine.
Writes bench/results/share_proxy.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

BATCH = 512
RESULTS = Path(__file__).resolve().parent / "results" / "share_proxy.json"


class EchoScorer:
    """Stands in for SharedClipScorer: one number per image, no work."""

    def score(self, images: list[bytes], captions: list[str]) -> list[float]:
        return [float(len(image) % 7) for image in images]


def _client(tag: str, folder: str, batches: int, size: int, results, done) -> None:
    from apache_beam.utils.multi_process_shared import MultiProcessShared

    scorer = MultiProcessShared(EchoScorer, tag=tag, path=folder, always_proxy=True).acquire()
    images = [os.urandom(size) for _ in range(BATCH)]
    captions = ["a red cube on a wooden table next to a blue ball"] * BATCH
    scorer.score(images[:2], captions[:2])  # connect first
    start = time.perf_counter()
    for _ in range(batches):
        scorer.score(images, captions)
    results.put((time.perf_counter() - start, batches * BATCH))
    done.wait()  # the shared object may live in this process: stay until every client is done


def measure(clients: int, size: int, batches: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        results, done = multiprocessing.Queue(), multiprocessing.Event()
        tag = f"share-proxy-{uuid.uuid4().hex}"
        processes = [
            multiprocessing.Process(target=_client, args=(tag, folder, batches, size, results, done))
            for _ in range(clients)
        ]
        for process in processes:
            process.start()
        timings = [results.get(timeout=600) for _ in processes]
        done.set()
        for process in processes:
            process.join()
    seconds = max(t for t, _ in timings)
    images = sum(n for _, n in timings)
    return {
        "clients": clients,
        "image_kb": size // 1000,
        "images": images,
        "images_per_s": round(images / seconds),
        "mb_per_s": round(images * size / seconds / 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--kb", type=int, default=40, help="payload per image (a web JPEG is ~20-60 KB)")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    print(f"{'clients':>8} {'KB/image':>9} {'images/s':>10} {'MB/s':>7}")
    rows = []
    for clients in args.clients:
        rows.append(measure(clients, args.kb * 1000, args.batches))
        row = rows[-1]
        print(f"{clients:>8} {row['image_kb']:>9} {row['images_per_s']:>10,} {row['mb_per_s']:>7,}")
    RESULTS.parent.mkdir(exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    RESULTS.write_text(
        json.dumps({"machine": machine, "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
