"""Memory of reading a forged artifact: a k=1 layer declaring 2**28 weights in a ~4 KB file (issue 15,
finding 2). Prints the file size, the outcome and the peak traced allocation of load_compressed and
inspect. Run: python benchmarks/hardening/bomb.py"""
from __future__ import annotations

import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import wsx  # noqa: E402
from _tiny import TinyBackend, make_mlp  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from wsx.artifact import inspect, read  # noqa: E402


def main(weights: int = 2 ** 28) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bomb.wsx"
        wsx.export(make_mlp()[0], {"fc1": 1}, path, backend=TinyBackend)
        manifest, arrays = read(path)
        entry = next(e for e in manifest["layers"] if e["name"] == "fc1")
        entry.update(shape=[weights], weights=weights, axes=[0])
        save_file(arrays, str(path), metadata={"format": "wsx-artifact", "wsx": json.dumps(manifest)})
        for name, call in (("load_compressed", wsx.load_compressed), ("inspect", inspect)):
            tracemalloc.start()
            try:
                call(path)
                outcome = "loaded"
            except wsx.WsxError as exc:
                outcome = f"{type(exc).__name__}: {str(exc)[:110]}..."
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"{name}: file {path.stat().st_size} bytes declaring {weights} weights -> {outcome} "
                  f"peak {peak / 2**20:.2f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2 ** 28)
