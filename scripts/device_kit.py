"""The folder a recognizer training run on a lent accelerator carries, and its unpacking there.

The device machine has PyTorch, numpy, OpenCV, typer and PyYAML but none of susik's other imports, no TeX, no
`../shared`, and takes at most 64 MiB of working tree (this repository's ~10 MB included). So the kit holds:
wheels of the missing packages; the glyph bank (`susik data handwriting --save-bank`) and the labels and
corpus it writes new handwriting from, since composed handwriting is made there on all cores; a share of each
pre-rendered crop set (TeX-rendered and photographed crops cannot be made there), its PNGs concatenated into one
file per set; and the starting weights in half precision. `configs/device_kit.yaml` names all of it.

    .venv/bin/python scripts/device_kit.py pack --spec configs/device_kit.yaml --out work/kit     # here
    python3 scripts/device_kit.py unpack --kit work/kit --out work/devdata                          # there

scripts/device_train.sh runs the steps there. `unpack` and `join` need only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

MIB = 1024 * 1024


def _records(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def _image_path(manifest: Path, record: dict) -> Path:
    path = Path(record["image"])
    return path if path.is_absolute() else manifest.parent / path


def pack_crops(name: str, manifest: Path, count: int, out: Path) -> tuple[int, int]:
    """The first `count` records of `manifest` as OUT/crops/NAME.bin (PNG bytes back to back) and NAME.jsonl
    (each record with `offset`/`length` into it instead of a path). Returns (crops, bytes) written."""
    folder = out / "crops"
    folder.mkdir(parents=True, exist_ok=True)
    records = _records(manifest)[:count]
    offset = 0
    with open(folder / f"{name}.bin", "wb") as blob, open(folder / f"{name}.jsonl", "w", encoding="utf-8") as index:
        for record in records:
            data = _image_path(manifest, record).read_bytes()
            blob.write(data)
            entry = {key: value for key, value in record.items() if key != "image"}
            index.write(json.dumps({**entry, "offset": offset, "length": len(data)}, ensure_ascii=False) + "\n")
            offset += len(data)
    return len(records), offset


def unpack_crops(kit: Path, out: Path) -> dict[str, int]:
    """Every packed set of a kit back to OUT/NAME/manifest.jsonl with its images under OUT/NAME/images."""
    written = {}
    for index in sorted((kit / "crops").glob("*.jsonl")):
        name = index.stem
        blob = (kit / "crops" / f"{name}.bin").read_bytes()
        images = out / name / "images"
        images.mkdir(parents=True, exist_ok=True)
        lines = []
        for number, line in enumerate(index.read_text(encoding="utf-8").splitlines()):
            record = json.loads(line)
            start, length = record.pop("offset"), record.pop("length")
            suffix = ".jpg" if blob[start:start + 2] == b"\xff\xd8" else ".png"
            relative = f"images/{number:06d}{suffix}"
            (out / name / relative).write_bytes(blob[start:start + length])
            lines.append(json.dumps({"image": relative, **record}, ensure_ascii=False))
        (out / name / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        written[name] = len(lines)
    return written


def join_manifests(manifests: list[Path], out: Path) -> int:
    """One manifest whose records point (relatively) at the images of several: the sets that parallel writer
    processes made become one training source."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for manifest in manifests:
        for record in _records(manifest):
            image = _image_path(manifest, record).resolve()
            lines.append(json.dumps({**record, "image": os.path.relpath(image, out.parent.resolve())},
                                    ensure_ascii=False))
    out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def labels_only(manifest: Path, target: Path) -> None:
    """A manifest's records without their images (the device needs the labels of the glyph set and of the set
    whose formulas must not be written, not their canvases)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    records = [{**record, "image": "absent.png"} for record in _records(manifest)]
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def starting_checkpoint(init: Path, calibration: Path | None) -> dict:
    """The checkpoint at `init`, or, when `init` is a bundled model folder (models/recognizer), that bundle rebuilt
    into torch weights (`susik.models.from_bundle`) with its BatchNorm measured on up to 64 crops of
    `calibration`: a fresh machine has the bundle but not the run that made it."""
    import torch

    if not init.is_dir():
        return torch.load(init, map_location="cpu", weights_only=False)
    from susik.data.crops import CropDataset
    from susik.models.from_bundle import checkpoint_from_bundle

    if calibration is None:
        raise SystemExit(f"init {init} is a bundle: the spec needs `calibration`, a crop manifest to rebuild it on")
    dataset = CropDataset(calibration)
    crops = [dataset[index][0] for index in range(min(64, len(dataset)))]
    return checkpoint_from_bundle(init, crops)


def half_precision_weights(state: dict, target: Path) -> None:
    """A checkpoint's weights in float16 with what `--init` reads (architecture, vocabulary, step, provenance);
    no optimiser state. Training casts them back to float32 on loading."""
    import torch

    keep = {key: state[key] for key in ("model_config", "train_config", "vocab", "step", "command", "sources",
                                        "data_versions") if key in state}
    keep["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    keep["best_metric"], keep["history"] = state.get("best_metric"), []
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(keep, target)


def download_wheels(requirements: list[str], target: Path) -> None:
    """Wheels for the device's Python (3.12, manylinux x86-64), without their dependencies: the spec names
    each missing package itself."""
    target.mkdir(parents=True, exist_ok=True)
    platforms = [arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
                 for arg in ("--platform", tag)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(target),
                    *requirements], check=True)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def pack(spec_path: Path, out: Path) -> None:
    import yaml

    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    download_wheels(spec["wheels"], out / "wheels")
    shutil.copy(spec["glyphs"]["bank"], out / "bank.npz")
    labels_only(Path(spec["glyphs"]["labels"]), out / "labels" / "glyph_labels.jsonl")
    for number, manifest in enumerate(spec["glyphs"].get("exclude", [])):
        labels_only(Path(manifest), out / "labels" / f"exclude_{number}.jsonl")
    for number, corpus in enumerate(spec["glyphs"].get("formulas", [])):
        shutil.copy(corpus, out / "labels" / f"formulas_{number}.txt")
    calibration = spec.get("calibration")
    half_precision_weights(starting_checkpoint(Path(spec["init"]), Path(calibration) if calibration else None),
                           out / "init.pt")
    for entry in spec["carry"]:
        crops, size = pack_crops(entry["name"], Path(entry["manifest"]), int(entry["count"]), out)
        print(f"  {entry['name']}: {crops} crops, {size / MIB:.1f} MiB")
    total = folder_bytes(out)
    print(f"kit {out}: {total / MIB:.1f} MiB (wheels {folder_bytes(out / 'wheels') / MIB:.1f}, weights "
          f"{(out / 'init.pt').stat().st_size / MIB:.1f}, crops {folder_bytes(out / 'crops') / MIB:.1f})")
    if total > spec["budget_mib"] * MIB:
        raise SystemExit(f"the kit is {total / MIB:.1f} MiB, over its budget of {spec['budget_mib']} MiB: carry fewer "
                         "crops (the working tree travels beside it within 64 MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="assemble the kit here")
    packing.add_argument("--spec", type=Path, default=Path("configs/device_kit.yaml"))
    packing.add_argument("--out", type=Path, default=Path("work/kit"))
    unpacking = commands.add_parser("unpack", help="restore the packed crop sets there")
    unpacking.add_argument("--kit", type=Path, default=Path("work/kit"))
    unpacking.add_argument("--out", type=Path, default=Path("work/devdata"))
    joining = commands.add_parser("join", help="one manifest over several (each set a writer process made)")
    joining.add_argument("--out", type=Path, required=True)
    joining.add_argument("manifests", type=Path, nargs="+")
    halving = commands.add_parser("half", help="a checkpoint's weights in float16, to bring back (<= 16 MiB)")
    halving.add_argument("checkpoint", type=Path)
    halving.add_argument("target", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.spec, args.out)
    elif args.command == "join":
        print(f"  {args.out}: {join_manifests(args.manifests, args.out)} crops")
    elif args.command == "half":
        half_precision_weights(starting_checkpoint(args.checkpoint, None), args.target)
    else:
        for name, count in unpack_crops(args.kit, args.out).items():
            print(f"  {name}: {count} crops")


if __name__ == "__main__":
    main()
