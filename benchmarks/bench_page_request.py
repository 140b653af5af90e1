"""Seconds per page request, as ``fruitkeras serve`` handles one: ``Inspection.explain`` on a sample photo.

Runs the same requests against two checkouts of fruitkeras, each in its own
process, alternating: this one and another (``--before``, e.g. a worktree of
the previous release).  Each request is one photo with one method; the first
request of each method (tracing, compilation) is reported apart, the rest as
the median.  The previous release traced a new compiled function on every
gradient, Grad-CAM and Integrated Gradients call; ours keeps one per model.

Usage:
    git worktree add /tmp/before <previous commit>
    python benchmarks/bench_page_request.py --before /tmp/before --model runs/fruits77-vgg_small
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REQUESTS = r"""
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from fruitkeras.cli import import_tensorflow_quietly
import_tensorflow_quietly()
from fruitkeras.explain.report import ExplainOptions
from fruitkeras.page_service import Inspection
inspection = Inspection(sys.argv[2])
photos = sorted(inspection.samples.values())
results = {}
with tempfile.TemporaryDirectory() as out:
    for method in json.loads(sys.argv[3]):
        seconds = []
        for number in range(int(sys.argv[4])):
            started = time.perf_counter()
            inspection.explain(photos[number % len(photos)], [method], ExplainOptions(), out)
            seconds.append(time.perf_counter() - started)
        results[method] = seconds
print(json.dumps(results))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="a checkout of the release to compare with")
    parser.add_argument("--model", default="runs/fruits77-vgg_small", help="run folder or model file")
    parser.add_argument("--requests", type=int, default=12, help="requests per method")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--method", action="append", help="methods (default: gradient, gradcam, integrated)")
    args = parser.parse_args()
    methods = args.method or ["gradient", "gradcam", "integrated"]
    checkouts = {"before": args.before.resolve(), "ours": Path(__file__).resolve().parent.parent}
    model = Path(args.model).resolve()
    model = str(model / "model.keras" if model.is_dir() else model)
    collected = {name: {method: {"first": [], "later": []} for method in methods} for name in checkouts}
    for _ in range(args.rounds):
        for name, checkout in checkouts.items():
            done = subprocess.run([sys.executable, "-c", REQUESTS, str(checkout), model, json.dumps(methods),
                                   str(args.requests)], capture_output=True, text=True, cwd=checkout)
            if done.returncode:
                sys.exit(f"{name} ({checkout}) failed:\n{done.stderr[-3000:]}")
            for method, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
                collected[name][method]["first"].append(seconds[0])
                collected[name][method]["later"].append(statistics.median(seconds[1:]))
    print(f"seconds per page request (one sample photo, one method), {args.rounds} processes each; "
          f"median of the {args.requests - 1} requests after the first")
    print(f"{'method':<12} {'before':>9} {'ours':>9} {'ratio':>7}   first request: before / ours")
    for method in methods:
        before, ours = (statistics.median(collected[name][method]["later"]) for name in checkouts)
        first_before, first_ours = (statistics.median(collected[name][method]["first"]) for name in checkouts)
        print(f"{method:<12} {before:9.3f} {ours:9.3f} {before / ours:6.1f}x   {first_before:.2f} / {first_ours:.2f}")


if __name__ == "__main__":
    main()
