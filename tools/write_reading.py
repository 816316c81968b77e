"""Write the reading thresholds (modelfile.Reading) into exported model files, changing nothing else.

    python tools/write_reading.py src/kcaptcha_solver/models [--only NAME --set KEY=VALUE ...]

For files exported before export.py wrote these keys: each NAME.onnx gets the ``kcaptcha.*`` entries and
each tfjs/NAME/model.json its ``userDefinedMetadata.kcaptcha`` fields, and no retraining. A value the ONNX
file already carries is kept (``sure_min`` is calibrated per model by tools/calibrate.py, which writes
through this module); a missing one gets the value a fresh export writes, and model.json gets the same
values as its ONNX file. The graph and weights are left as they are: the tool refuses to write when a
file does not round-trip byte for byte without the new keys, and checks that onnxruntime gives the same
probabilities, bit for bit, before and after. ``--set`` writes a value chosen by hand into NAME's files (the
shipped gnuboard5 files got ``--set trusted=0123456789``: see modelfile.Reading.trusted).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from kcaptcha_solver.modelfile import Reading, bare


def _probs(data: bytes, images: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["probs"], {"image": images})[0]


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def update_onnx(path: Path, reading: Reading) -> bool:
    """Set the reading entries of one ONNX file; True when it changed."""
    before = path.read_bytes()
    proto = onnx.load_from_string(before)
    if proto.SerializeToString() != before:
        raise SystemExit(f"{path} does not round-trip through onnx byte for byte: not touching it")
    entries = {p.key: p.value for p in proto.metadata_props}
    wanted = reading.to_meta()
    if all(entries.get(k) == v for k, v in wanted.items()):
        return False
    for key, value in wanted.items():
        found = [p for p in proto.metadata_props if p.key == key]
        entry = found[0] if found else proto.metadata_props.add()
        entry.key, entry.value = key, value
    after = proto.SerializeToString()
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]]
    images = np.random.default_rng(0).integers(0, 256, (8, *dims), dtype=np.uint8)
    if not np.array_equal(_probs(before, images), _probs(after, images)):
        raise SystemExit(f"{path}: the probabilities changed: not writing it")
    _write(path, after)
    return True


def update_tfjs(path: Path, reading: Reading) -> bool:
    """Set the reading fields of one model.json; True when it changed."""
    before = path.read_text()
    doc = json.loads(before)
    if json.dumps(doc, separators=(",", ":")) != before:
        raise SystemExit(f"{path} does not round-trip through json byte for byte: not touching it")
    meta = doc["userDefinedMetadata"]["kcaptcha"]
    wanted = asdict(reading)
    if all(meta.get(k) == v for k, v in wanted.items()):
        return False
    meta.update(wanted)
    _write(path, json.dumps(doc, separators=(",", ":")).encode())
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, help="folder of NAME.onnx files and tfjs/NAME/model.json")
    ap.add_argument("--only", metavar="NAME", help="this model's files only")
    ap.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                    help="write this Reading field's value (with --only)")
    args = ap.parse_args()
    chosen = dict(item.split("=", 1) for item in args.set)
    if chosen and not args.only:
        ap.error("--set needs --only NAME")
    if unknown := set(chosen) - {f.name for f in fields(Reading)}:
        ap.error(f"not a Reading field: {', '.join(sorted(unknown))}")
    for path in sorted(args.models.glob(f"{args.only or '*'}.onnx")):
        meta = bare({p.key: p.value for p in onnx.load(str(path)).metadata_props})
        reading = Reading.from_meta({**meta, **chosen})
        print(f"{path}: {'updated' if update_onnx(path, reading) else 'already current'}")
        tfjs = args.models / "tfjs" / path.stem / "model.json"
        if tfjs.is_file():
            print(f"{tfjs}: {'updated' if update_tfjs(tfjs, reading) else 'already current'}")


if __name__ == "__main__":
    main()
