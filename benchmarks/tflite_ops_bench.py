"""Operators and latency of `.tflite` files side by side, timed interleaved in one run.

For each `--tflite LABEL=FILE`: its operator count and most frequent operators, its GPU delegate
check (`reseg_tf.export.tflite_analysis`), and ms per image at each `--threads` count, in wall
time (`ms_N_threads`) and in the process's CPU time (`cpu_ms_N_threads`: with one thread, the
time the interpreter itself ran, steadier than wall time on a shared machine). The files
are timed in turns (round after round, each round every file at every thread count) so that a
busy machine slows them alike; each figure is the median over the rounds. Images: real CamVid
frames at each file's input size (uint8 for int8 files), as `front_end_bench.py` feeds them.

    python benchmarks/tflite_ops_bench.py --tflite before=A.tflite --tflite after=B.tflite
        [--threads 1,2] [--rounds 5] [--num-images 4]
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from front_end_bench import SHARED_CAMVID, tflite_ms  # noqa: E402
from reseg_tf import export  # noqa: E402
from reseg_tf.export.tflite_analysis import analyze_tflite  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", action="append", required=True, metavar="LABEL=FILE",
                        help="a .tflite file to measure, under a label; repeatable")
    parser.add_argument("--threads", default="1,2", help="comma-separated interpreter thread counts")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of interleaved timing (median reported)")
    parser.add_argument("--num-images", type=int, default=4, help="real images timed per round")
    args = parser.parse_args()
    files = {}
    for labelled in args.tflite:
        label, _, path = labelled.partition("=")
        if not label or not path or not Path(path).is_file():
            parser.error(f"--tflite {labelled!r}: expected LABEL=FILE with an existing file")
        files[label] = path
    threads = [int(t) for t in args.threads.split(",")]
    images_dir = SHARED_CAMVID if SHARED_CAMVID.is_dir() else export.sample_data_dir()
    paths = export.spread_files(export.find_images(images_dir), args.num_images)
    images = {}
    for label, path in files.items():
        size = tuple(int(v) for v in export.load_tflite(path).get_input_details()[0]["shape"][1:3])
        images[label] = export.load_images(paths, size)
    clocks = {"ms": time.perf_counter, "cpu_ms": time.process_time}
    times = {(label, n, clock): [] for label in files for n in threads for clock in clocks}
    for _ in range(args.rounds):
        for n in threads:
            for label, path in files.items():
                for clock, read in clocks.items():
                    times[label, n, clock].append(tflite_ms(path, images[label], 1, n, read))
    rows = {}
    for label, path in files.items():
        analysis = analyze_tflite(path)
        rows[label] = {"file": os.path.relpath(path, ROOT), "operators": analysis["operators"],
                       "top_ops": analysis["top_ops"], "gpu_compatible": analysis["gpu_compatible"],
                       "unsupported_ops": analysis["unsupported_ops"],
                       **{f"{clock}_{n}_threads": statistics.median(times[label, n, clock])
                          for n in threads for clock in clocks}}
    print(json.dumps({"benchmark": "tflite_ops", "cpu_count": os.cpu_count(), "rounds": args.rounds,
                      "images": os.path.relpath(images_dir, ROOT), "files": rows}))


if __name__ == "__main__":
    main()
