"""A backbone folder carried to a lent GPU machine in parts, and put together there.

A device call carries at most 64 MiB, and all-mpnet-base-v2's weights are 438 MB; files under
an ignored path stay on a warm machine between calls. So `split` writes the backbone here as
bf16 weights (219 MB; a pretrained start loses nothing that matters by it: each weight moves by
at most 2^-9 of itself, and fine-tuning runs in bf16 autocast anyway) with its config and
tokenizer, as one tar cut into parts of --part-mib, under .carry/ (ignored through
.git/info/exclude), and prints which part each call carries. `join`, on the device, checks every
part against the manifest, unpacks the folder and writes the weights back as fp32 (the dtype
`sentiment train` starts from everywhere else), then prints the folder.

    python -m benchmarks.backbone_parts split --model mpnet --out .carry/mpnet
    # device calls in a row (a machine idle for 30 s is given back, and the parts with it):
    #   carry [".gpukit"]                        command: source .gpukit/setup.sh
    #   carry [".carry/mpnet/part-000"]           command: ls -l .carry/mpnet
    #   ...                                      (one part a call)
    #   carry [".carry/mpnet/part-003", ".carry/mpnet/manifest.json"]
    #       command: source .gpukit/setup.sh && bash benchmarks/gpu_quality.sh
    python -m benchmarks.backbone_parts join --parts .carry/mpnet --to /tmp/mpnet
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
# What a backbone folder needs for `sentiment train --model`: config, weights, tokenizer files.
KEPT_SUFFIXES = (".json", ".txt", ".model")
LEFT_OUT = {"config_sentence_transformers.json", "modules.json", "sentence_bert_config.json"}
_CHUNK = 8 * 1024 * 1024


def split(model: str, out: Path, part_mib: float) -> dict:
    """The backbone folder as bf16 weights plus config and tokenizer, tarred and cut into parts
    under out, with a manifest; returns the manifest."""
    import torch
    from safetensors.torch import load_file, save_file

    from sentiment.model.classifier import resolve_backbone

    folder = Path(resolve_backbone(model))
    if not (folder / WEIGHTS).is_file():
        sys.exit(f"{folder} has no {WEIGHTS}: only a local or packaged backbone folder can be split")
    weights = {name: tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
               for name, tensor in load_file(folder / WEIGHTS).items()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in KEPT_SUFFIXES and path.name not in LEFT_OUT:
                tar.add(path, arcname=path.name)
        with tempfile.TemporaryDirectory() as scratch:
            save_file(weights, os.path.join(scratch, WEIGHTS), metadata={"format": "pt"})
            tar.add(os.path.join(scratch, WEIGHTS), arcname=WEIGHTS)
    data = buffer.getvalue()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    size = max(1, int(part_mib * 1024 * 1024))
    parts = []
    for number, start in enumerate(range(0, len(data), size)):
        piece = data[start:start + size]
        name = f"part-{number:03d}"
        (out / name).write_bytes(piece)
        parts.append({"name": name, "bytes": len(piece), "sha256": hashlib.sha256(piece).hexdigest()})
    manifest = {"source": model, "weights_dtype": "bfloat16", "tar_bytes": len(data),
                "tar_sha256": hashlib.sha256(data).hexdigest(), "parts": parts}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    _ignore(out)
    return manifest


def _ignore(out: Path) -> None:
    """out's top folder in .git/info/exclude, so that `carry` may name what is below it."""
    try:
        top = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                                  check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return
    first = out.resolve().relative_to(top).parts[0] if out.resolve().is_relative_to(top) else None
    exclude = top / ".git" / "info" / "exclude"
    if first and exclude.parent.is_dir():
        lines = exclude.read_text().splitlines() if exclude.exists() else []
        if f"/{first}/" not in lines:
            exclude.write_text("\n".join([*lines, f"/{first}/"]) + "\n")


def join(parts: Path, to: Path) -> Path:
    """The folder split() cut, put together under `to` with fp32 weights; exits naming what is
    missing or damaged."""
    from safetensors.torch import load_file, save_file

    if not (parts / MANIFEST).is_file():
        sys.exit(f"{parts / MANIFEST} is missing: carry it with the last part")
    manifest = json.loads((parts / MANIFEST).read_text())
    missing = [p["name"] for p in manifest["parts"] if not (parts / p["name"]).is_file()]
    if missing:
        sys.exit(f"{parts}: parts {', '.join(missing)} of {len(manifest['parts'])} are not here "
                 "(not carried yet, or the machine was given back between calls): carry them")
    whole = hashlib.sha256()
    buffer = io.BytesIO()
    for part in manifest["parts"]:
        piece = (parts / part["name"]).read_bytes()
        if len(piece) != part["bytes"] or hashlib.sha256(piece).hexdigest() != part["sha256"]:
            sys.exit(f"{parts / part['name']} is damaged ({len(piece)} bytes, expected {part['bytes']}): carry it again")
        whole.update(piece)
        buffer.write(piece)
    if whole.hexdigest() != manifest["tar_sha256"]:
        sys.exit(f"{parts}: the parts are not the ones the manifest was written with: split and carry them again")
    if to.exists():
        shutil.rmtree(to)
    to.mkdir(parents=True)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r") as tar:
        tar.extractall(to, filter="data")
    weights = {name: tensor.float() if tensor.is_floating_point() else tensor
               for name, tensor in load_file(to / WEIGHTS).items()}
    save_file(weights, to / WEIGHTS, metadata={"format": "pt"})
    return to


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cut = commands.add_parser("split", help="here: the backbone as parts under --out")
    cut.add_argument("--model", default="mpnet", help="a backbone name (mpnet, minilm) or folder (default: mpnet)")
    cut.add_argument("--out", type=Path, default=Path(".carry/mpnet"), help="where the parts go (default: .carry/mpnet)")
    cut.add_argument("--part-mib", type=float, default=60,
                     help="MiB per part: a call carries 64 MiB with the tracked files (default: 60)")
    together = commands.add_parser("join", help="on the device: the parts as a backbone folder")
    together.add_argument("--parts", type=Path, default=Path(".carry/mpnet"))
    together.add_argument("--to", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "split":
        manifest = split(args.model, args.out, args.part_mib)
        names = [p["name"] for p in manifest["parts"]]
        print(f"{args.model}: {manifest['tar_bytes'] / 2**20:.0f} MiB in {len(names)} parts under {args.out}")
        for number, name in enumerate(names):
            extra = f', "{args.out / MANIFEST}"' if number == len(names) - 1 else ""
            print(f'  call {number + 1}: carry ["{args.out / name}"{extra}]')
    else:
        print(join(args.parts, args.to))


if __name__ == "__main__":
    main()
