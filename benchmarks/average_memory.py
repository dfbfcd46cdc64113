"""Peak memory of `sentiment average`'s weight averaging: every member loaded at once (the code
before 2026-12-05) against one member at a time beside a running sum (sentiment.model.average.WeightSum).

Each way runs in a fresh process (peak RSS, `ru_maxrss`, is per process) on the same N saved
classifiers of one backbone; prints each peak, the ratio, and the prediction from the model's size:
all at once holds N members, a float64 sum (2 members' worth) and a copy; one at a time holds one
member and the sum.

    python -m benchmarks.average_memory --backbone minilm --members 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

_MEASURE = r"""
import json, resource, sys
from sentiment.model.classifier import load_classifier
from sentiment.model.average import WeightSum, average_weights
way, folders = sys.argv[1], sys.argv[2:]
import torch  # imported by both ways before the baseline is read
load_classifier(folders[0])
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if way == "all-at-once":
    soup = average_weights([(f, load_classifier(f)[0]) for f in folders])
else:
    weights = WeightSum()
    for f in folders:
        model = load_classifier(f)[0]
        weights.add(f, model)
    soup = weights.mean_into(model)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_mib": baseline / 1024, "peak_mib": peak / 1024}))
"""


def measure(way: str, folders: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", _MEASURE, way, *folders], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="minilm", help="backbone the members are built from (default: minilm)")
    parser.add_argument("--members", type=int, default=4)
    args = parser.parse_args(argv)

    import torch

    from sentiment.model.classifier import build_classifier, save_classifier

    with tempfile.TemporaryDirectory() as scratch:
        folders = []
        for seed in range(args.members):
            torch.manual_seed(seed)
            model, tokenizer = build_classifier(args.backbone)
            save_classifier(model, tokenizer, f"{scratch}/m{seed}")
            folders.append(f"{scratch}/m{seed}")
        model_mib = sum(p.numel() * p.element_size() for p in model.state_dict().values()) / 2**20
        before, after = measure("all-at-once", folders), measure("one-at-a-time", folders)
    grown = {name: result["peak_mib"] - result["baseline_mib"] for name, result in
             (("all-at-once", before), ("one-at-a-time", after))}
    print(f"{args.members} members of {args.backbone}, {model_mib:.0f} MiB each (fp32)")
    for name, result in (("all-at-once", before), ("one-at-a-time", after)):
        print(f"  {name:<14} peak {result['peak_mib']:.0f} MiB, {grown[name]:.0f} MiB above one loaded member")
    # A model far smaller than the process (the tests' tiny one) grows nothing peak RSS can see.
    ratio = f"{grown['one-at-a-time'] / grown['all-at-once']:.2f}x" if grown["all-at-once"] > 0 else "n/a"
    print(f"  one at a time / all at once, above the baseline: {ratio} "
          f"(predicted from the sizes: {(2 + 1) / (args.members + 2 + 1):.2f}x)")
    return {"model_mib": model_mib, **grown}


if __name__ == "__main__":
    main()
