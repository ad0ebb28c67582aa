#!/usr/bin/env python3
"""Benchmark (not a test): import and compile a full-size model with no
weight data present (moe-compile DIR --shape-only), from its real
config.json, and report the wall time, the peak resident memory and the time
of each stage (import, lowering, code generation, linking).

    /usr/bin/python3 bench/compile_real_model.py [--build build]
        [--model-type deepseek_v3] [--repeat 3]

The config is the published one for the model type (scripts/
gen_hf_checkpoint.py --preset real --config-only): for DeepSeek-V3, 61
layers, 256 routed experts, hidden 7168. The goal (issue 4): under 60 s and
2 GiB peak on a 2-core machine. Reports medians over --repeat runs.
"""

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--model-type", default="deepseek_v3")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    compile_tool = os.path.join(args.build, "bin", "moe-compile")

    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_hf_checkpoint.py"),
                        "--model-type", args.model_type, "--preset", "real",
                        "--config-only", "--out", model], check=True)
        walls, peaks, stages = [], [], {}
        for _ in range(args.repeat):
            out = os.path.join(tmp, "model.so")
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            proc = subprocess.run([compile_tool, model, "--shape-only", "-o", out,
                                   "--time-stages"], capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            if proc.returncode != 0:
                sys.exit(proc.stderr)
            # ru_maxrss of children is the largest child so far (KiB).
            peaks.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
            for name, secs in re.findall(r"moe-compile: (\w[\w ]*?)\s+([0-9.]+) s", proc.stderr):
                stages.setdefault(name, []).append(float(secs))
            size = os.path.getsize(out)
        print(f"{args.model_type} (real config, shape only), {args.repeat} runs, medians:")
        print("| stage | seconds |")
        print("| --- | --- |")
        for name, values in stages.items():
            print(f"| {name} | {statistics.median(values):.2f} |")
        print(f"| **total (wall)** | **{statistics.median(walls):.2f}** |")
        print(f"\npeak resident memory: {max(peaks) / 1024:.0f} MiB; "
              f"library: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
