"""Scenario 7: the device bundle of the full preset, per precision: `doit bundle` after a full `doit`
of the default pipeline (toolchain ort-qnn), the folder's and the zip's size, and what dominates.

`python -m bench.bundle_size` runs it alone and merges it into bench/results.json and BENCHMARKS.md.
"""

from __future__ import annotations

import sys

import yaml

from .common import ROOT, doit_cmd, run_measured


def bundle_sizes(log) -> dict:
    from .build import write_pipeline
    folder = ROOT / "artifacts" / "bench-bundle"
    pipe_path = write_pipeline(folder)
    full = run_measured(doit_cmd(pipe_path))
    log(f"  full doit of the default pipeline: {full['seconds'] / 60:.1f} min")
    data = yaml.safe_load(pipe_path.read_text())
    out = {"full_doit_seconds": full["seconds"], "precisions": {}}
    for precision in data["precisions"]:
        data["bundle"] = {"precision": precision}
        pipe_path.write_text(yaml.safe_dump(data, sort_keys=False))
        res = run_measured(doit_cmd(pipe_path, "bundle"))
        bdir = folder / "artifacts" / "bundle" / precision
        files = {p.relative_to(bdir).as_posix(): p.stat().st_size for p in bdir.rglob("*") if p.is_file()}
        zip_bytes = (folder / "artifacts" / "bundle" / f"smolvla-{precision}.zip").stat().st_size
        largest = sorted(files.items(), key=lambda kv: -kv[1])[:5]
        out["precisions"][precision] = {"folder_mb": sum(files.values()) / 1e6, "zip_mb": zip_bytes / 1e6,
                                        "files": len(files), "largest_mb": {k: v / 1e6 for k, v in largest},
                                        "bundle_seconds": res["seconds"], "peak_rss_mb": res["peak_rss_mb"]}
        log(f"  bundle {precision}: {out['precisions'][precision]['folder_mb']:.0f} MB folder, {zip_bytes / 1e6:.0f} MB zip")
    return out


def main() -> int:
    from .benchmarks_md import merge_scenario
    merge_scenario("bundle", bundle_sizes(lambda m: print(m, file=sys.stderr, flush=True)), "python -m bench.bundle_size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
