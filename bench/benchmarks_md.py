"""BENCHMARKS.md from bench/results.json: every figure below comes from one `python -m bench` run."""

from __future__ import annotations

import re
from pathlib import Path

from .common import fmt


def merge_scenario(key: str, data: dict, command: str) -> None:
    """A scenario run alone (`python -m bench.<module>`): its figures, dated, into bench/results.json
    beside the last full run's, and BENCHMARKS.md rewritten from them."""
    import datetime
    import json

    from .common import ROOT
    results_file = ROOT / "bench" / "results.json"
    results = json.loads(results_file.read_text())
    results[key] = dict(data, date=datetime.date.today().isoformat(), command=command)
    results_file.write_text(json.dumps(results, indent=2))
    write_markdown(results, str(ROOT / "BENCHMARKS.md"))
    print(json.dumps(results[key], indent=2))


def write_markdown(r: dict, out: str) -> None:
    L = ["# BENCHMARKS", "",
         f"Reproduce: `python -m bench` (about {r['bench_seconds'] / 60:.0f} minutes on this machine; writes this file and "
         "bench/results.json; sections measured by another command say which).", "",
         f"Unless a section says how it was measured, its figures come from one run of `{r['command']}` on {r['date']}"
         + (f" at commit {r['commit']}" if r.get("commit") else "") + f", on {r['machine']}.",
         f"Timings repeated {r['reps']} times report median (min, max, n); single-shot figures say so. "
         f"The whole run took {r['bench_seconds'] / 60:.1f} min. Raw numbers: `bench/results.json`.",
         "Preset `smolvla-libero` (full size: 98M vision, 157M LLM prefix + 47M CPU embedding table, 100M action "
         "head) with **random weights**; toolchain `ort-qnn` (onnxruntime-qnn, QNN 2.51, HTP emulation on x86_64 "
         "for soc_model 60 / v73).", "",
         "## 1. Cold build per stage (full preset)", "",
         "Each stage runs in its own `doit` process in dependency order from an empty artifacts folder; single "
         "shot (a cold build cannot be repeated 5 times within the bench's 30-minute budget). Peak RSS is that "
         "process's own (wait4).", "",
         "| stage | wall s | peak RSS MB |", "|---|---|---|"]
    for task, v in r["cold_build"].items():
        L.append(f"| `{task}` | {v['seconds']:.1f} | {v['peak_rss_mb']:.0f} |")
    L += ["", "Validation is measured for fp16 only: one HTP-emulated call of the full vision encoder takes minutes "
          "on x86, and the fp32 validations cost the same engine time again.", "",
          "(`validate:` rows: that work is now the `measure:` task; `validate:` only reads its metrics.) "
          "What the validate stages of this run measured (HTP emulation of the fp16 context vs the fp32 "
          "reference, seeded realistic inputs; the action head over the whole 10-step rollout):", "",
          "| stage | status | cosine | max abs | PSNR dB | HTP s/call | reference s/call | max activation | beyond fp16 |",
          "|---|---|---|---|---|---|---|---|---|"]
    for k, v in r.get("validation_full", {}).items():
        m = v["metrics"]
        L.append(f"| {k} | {v['status']} | {m['cosine']:.6f} | {m['max_abs']:.3g} | {m['psnr_db']:.1f} | "
                 f"{v['htp_seconds_per_call']:.1f} | {v['reference_seconds_per_call']:.2f} | "
                 f"{v['intermediate_max_abs']:.4g} | {v['intermediates_beyond_fp16']} |")
    L += ["", "Reasons given for any status other than pass: " + ("; ".join(
          f"{k}: {', '.join(v['reasons'])}" for k, v in r.get("validation_full", {}).items() if v["reasons"]) or "none") + ".",
          "",
          "## 2. No-op and incremental rebuild", ""]
    L += ([f"- cold main job, `bash scripts/build.sh pipeline=artifacts/bench-main/pipeline.yaml` (the default "
              f"pipeline, no artifacts, packages installed: {r['main_job']['tasks_ran']} doit tasks, then the LIBERO "
              f"episode): {r['main_job']['seconds'] / 60:.1f} min (single shot; goal <= 8 min), its largest process "
              f"{r['main_job']['peak_rss_mb']:.0f} MB (wait4).",
              f"- no-op: bare `doit` on that finished build: {fmt(r['main_job']['noop_full_doit'])} (goal < 0.3 s)."]
          if "main_job" in r else [])
    rb = r.get("rebuild_option_change") or dict(r["rebuild_fp32"], precision="fp32")    # runs before 2026-11-29
    L += [f"- no-op `doit export preprocess reference context` with all full-size build artifacts present: {fmt(r['noop'])} "
          "(goal < 1 s).",
          f"- rebuild after a one-line change of the {rb['precision']} precision's `vtcm_mb`: {rb['seconds']:.1f} s "
          f"(single shot, peak RSS {rb['peak_rss_mb']:.0f} MB); tasks that ran: "
          + ", ".join(f"`{t}`" for t in rb["ran"]) + f". The {rb['precision']} measure and validate tasks rerun too in a full "
          "`doit`; they cost what scenario 1 shows for validation.", "",
          "## 3. Control step on the `reference` runtime (onnxruntime CPU, fp32, full preset)", ""]
    c = r["control_step"]
    L += ["| part | time |", "|---|---|",
          f"| vision encoder x2 | {fmt(c['vision_x2_s'])} |", f"| LLM backbone x1 | {fmt(c['llm_s'])} |",
          f"| action head x10 (Euler) | {fmt(c['action_head_x10_s'])} |", f"| **total control step** | {fmt(c['total_s'])} |",
          f"| sum of bare session.run | {fmt(c['bare_session_run_s'])} |",
          f"| orchestration overhead | {fmt(c['overhead_s'])} |",
          f"| overhead, % of total | {fmt(c['overhead_pct'], unit='%', digits=2)} (goal < 2%) |", "",
          "Overhead = control-step time minus the 13 bare `session.run` calls of the three stage graphs: image "
          "resize/normalisation, tokenisation, the CPU embedding lookup, the CPU sinusoids (timestep embedding, RoPE tables) and the Euler "
          "update.", ""]
    u = c.get("unfused")
    if u:
        fused = ", ".join(f"{m}: " + (", ".join(f"{n} {op}" for op, n in v["fusions"].items() if n) + " fused, max relative "
                                      f"error {max(v['relative_error'].values()):.1e}" if v["uses"] == "fused" else v["reason"])
                          for m, v in c["cpu_copies"].items())
        L += ["The reference runtime runs each model's CPU copy from `doit reference` (onnxruntime's fused CPU "
              f"kernels where the pattern matches, checked against the unfused model: {fused}). The same control step "
              "with the unfused preprocessed models, same run:", "",
              "| part | CPU copies | unfused models |", "|---|---|---|",
              f"| vision encoder x2 | {fmt(c['vision_x2_s'])} | {fmt(u['vision_x2_s'])} |",
              f"| LLM backbone x1 | {fmt(c['llm_s'])} | {fmt(u['llm_s'])} |",
              f"| action head x10 | {fmt(c['action_head_x10_s'])} | {fmt(u['action_head_x10_s'])} |",
              f"| total | {fmt(c['total_s'])} | {fmt(u['total_s'])} |", ""]
        same = [m for m, v in c["cpu_copies"].items() if v["uses"] != "fused"]
        if same:
            L += [f"The copies of {', '.join(same)} are the preprocessed models themselves, so their two columns ran "
                  "the same model: their difference is this machine's run-to-run noise (the unfused column ran second).", ""]
    L += ["## 4. Persistent sessions vs one process per call", ""]
    p = r["process_per_call"]
    L += [f"Same engine (onnxruntime CPU), same inputs, same run; {p['calls_per_control_step']} stage calls per control "
          "step (vision x2, LLM x1, action head x10). Process per call = the qnn-net-run pattern: a fresh Python "
          "process loads the model, runs one call, writes its outputs.", "",
          "| mode | seconds per control step |", "|---|---|",
          f"| persistent sessions | {fmt(p['persistent_s'])} |", f"| one process per call | {fmt(p['process_per_call_s'])} |",
          f"| ratio | {fmt(p['ratio'], unit='x', digits=2)} (goal >= 5x) |", "",
          "## 5. HTP emulation cost per stage (tiny preset, for the record)", "",
          "Emulation speed on x86 says nothing about the device.", "",
          "| stage-precision | context load s | s per call |", "|---|---|---|"]
    for k, v in r["htp_emulation_tiny"].items():
        L.append(f"| {k} | {v['load_s']:.2f} | {fmt(v['call_s'])} |")
    lp = r.get("lerobot_parity")
    if lp:
        c = lp["comparison"]
        L += ["", "## 6. The built policy vs LeRobot's own SmolVLA (full preset)", "",
              f"Measured by `{lp.get('command', r['command'])}` on {lp.get('date', r['date'])}. LeRobot's SmolVLA "
              f"(PyPI lerobot {lp['lerobot']['lerobot']}, torch {lp['lerobot']['torch']}, {lp['lerobot']['threads']} "
              "threads, in the environment of `scripts/lerobot_env.sh`) at the smolvla-libero size with random weights, "
              "saved by LeRobot's `save_pretrained`, built by `doit reference` (export, preprocess, CPU copies) from that folder as saved "
              f"({lp['build_seconds']:.0f} s, peak RSS {lp['build_peak_rss_mb']:.0f} MB), same observation, same noise. "
              "Both control steps are timed the same way: in a fresh process, after the files it reads are synced to "
              "disk and one untimed step.", "",
              "| check | result |", "|---|---|",
              f"| language tokens and mask equal | {c['tokens_equal']} |",
              f"| pixel values, max abs | {c['pixels_max_abs']:.2e} |",
              f"| vision stage: cosine / max abs | {c['vision_cosine']:.8f} / {c['vision_max_abs']:.2e} |",
              f"| actions (raw observation -> unnormalized chunk {c['actions_shape']}): cosine / max abs | "
              f"{c['actions_cosine']:.8f} / {c['actions_max_abs']:.2e} (largest action {c['actions_max_magnitude']:.2f}) |", "",
              "| control step (CPU, this machine) | seconds |", "|---|---|",
              f"| LeRobot (processors + predict_action_chunk, PyTorch) | {fmt(lp['lerobot_control_step_s'])} |",
              f"| ours (`reference` runtime, onnxruntime) | {fmt(lp['ours_control_step_s'])} |",
              *(["| ours: vision x2 / LLM / action head x10 | " + " / ".join(f"{lp['ours_parts_s'][k]['median']:.3f}"
                 for k in ("vision_s", "llm_s", "action_head_s")) + " s (medians) |"] if "ours_parts_s" in lp else []),
              f"| ratio LeRobot / ours | {lp['ratio_lerobot_over_ours']:.2f}x |",
              f"| ours / LeRobot | {1 / lp['ratio_lerobot_over_ours']:.3f} (goal <= 0.5) |"]
        if lp.get("date") and lp["date"] != r["date"]:
            L += ["", f"Sections 1-5 are from the {r['date']} run, before the vision encoder's position ids were "
                  "made LeRobot's (transformers 4.x bucketing; the build now matches LeRobot as above): their vision "
                  "figures were measured on the earlier graph, which differed from LeRobot's by the position table."]
    b = r.get("bundle")
    if b:
        L += ["", "## 7. The device bundle (full preset, `doit bundle`)", "",
              f"Measured by `{b['command']}` on {b['date']}: a full `doit` of the default pipeline "
              f"({b['full_doit_seconds'] / 60:.1f} min, toolchain ort-qnn), then `doit bundle` per precision. The "
              "bundle holds each model's HTP context and its fp32 reference model (the CPU runtime off the device).", "",
              "| precision | folder MB | zip MB | files | largest files (MB) | bundle s |", "|---|---|---|---|---|---|"]
        for p, v in b["precisions"].items():
            big = ", ".join(f"{k} {mb:.0f}" for k, mb in v["largest_mb"].items())
            L.append(f"| {p} | {v['folder_mb']:.0f} | {v['zip_mb']:.0f} | {v['files']} | {big} | {v['bundle_seconds']:.1f} |")
    e = r.get("eval_scaling")
    if e:
        L += ["", "## 8. LIBERO evaluation on Ray (`doit eval`)", "",
              f"Measured by `{e['command']}` on {e['date']}. Tiny preset, reference runtime, "
              f"{e['runs'][0]['episodes']} episodes of {e['runs'][0]['steps_per_episode']} policy steps (plus LIBERO's "
              "10 no-op steps), no videos, a local Ray instance; single shots.", "",
              "| workers | wall s | episodes/hour | mean episode s | driver overhead per episode s | Ray start s |",
              "|---|---|---|---|---|---|"]
        for x in e["runs"]:
            L.append(f"| {x['workers']} | {x['wall_s']:.1f} | {x['episodes_per_hour']:.0f} | {x['mean_episode_s']:.1f} | "
                     f"{x['driver_overhead_per_episode_s']:.1f} | {x['ray_start_s'] if x['ray_start_s'] is not None else '-'} |")
        f = e["full_episode"]
        L += ["", f"Scaling 2 workers / 1: {e['scaling_2_over_1']:.2f}x on this 2-core machine (the simulator and the "
              "policy share the cores). Driver overhead = wall time minus the episodes' own time divided among the "
              "workers, per episode: Ray and actor start-up (policy load, LIBERO import), scheduling, result files.", "",
              f"Full preset, one episode on the reference runtime (`doit infer:task0`): {f['steps']} steps in "
              f"{f['seconds']:.0f} s (peak RSS {f['peak_rss_mb']:.0f} MB), i.e. about "
              f"{2000 * f['seconds'] / 3600:.0f} hours for LIBERO's 2,000 episodes on one such machine."]
    q = r.get("quantization")
    if q:
        L += quantization_section(q)
    n = r.get("noop_ab")
    if n:
        rev = n["revisions"]
        L += ["", "## 10. No-op `doit`, A/B against an earlier revision (tiny preset)", "",
              f"Measured by `{n['command']}` on {n['date']}, on {n['machine']}: a separate run from the sections "
              "above. Each revision builds the tiny preset once in its own clone; then a bare `doit` (task "
              "generation and the up-to-date checks, nothing to run) is timed alternately.", "",
              "| revision | bare `doit` on a finished build |", "|---|---|",
              f"| {rev['base']} (base) | {fmt(n['base'])} |", f"| {rev['head']} (head) | {fmt(n['head'])} |"]
    if r.get("episode_split"):
        L += episode_section(r["episode_split"], r)
    if r.get("htp_kernels"):
        from .htp_kernels import section
        L += section(r["htp_kernels"])
    if r.get("worker_threads"):
        from .worker_threads import section
        L += section(r["worker_threads"])
    if r.get("fp16_rewrites"):
        from .fp16_rewrites import section
        L += section(r["fp16_rewrites"])
    write_merged(out, "\n".join(L) + "\n")


SECTION = re.compile(r"^## (\d+)\. ", re.M)


def sections(text: str) -> tuple[str, dict[int, str]]:
    """The text before the first numbered section, and each `## N. ...` section by its number."""
    starts = [m.start() for m in SECTION.finditer(text)]
    body = {int(SECTION.match(text, s).group(1)): text[s:e].rstrip("\n") + "\n"
            for s, e in zip(starts, starts[1:] + [len(text)])}
    return text[:starts[0] if starts else len(text)], body


def write_merged(out: str, text: str) -> None:
    """Write the sections this run produced; a section it does not produce (one measured by hand, which
    says when and how) is kept as the file had it, in number order."""
    head, fresh = sections(text)
    kept = sections(Path(out).read_text())[1] if Path(out).is_file() else {}
    merged = {**kept, **fresh}
    Path(out).write_text(head + "\n".join(merged[n] for n in sorted(merged)))


def episode_section(s: dict, r: dict) -> list[str]:
    rows = {e["episode"]: e for e in s["episodes"]}
    none = rows["without video (videos: none)"]
    plans = -(-none["steps"] // s.get("n_action_steps", 10))
    L = ["", f"## 12. Where an episode's time goes ({'full' if s['preset'] == 'smolvla-libero' else s['preset']} preset)", "",
         "`bench/episode_split.py` on the main job's build (section 2), in one process: the built reference policy, "
         f"{s['suite']} task {s['task']}, LIBERO's step limit after its 10 no-op steps, the same seed in every episode. "
         "Single shots. \"before\" renders both cameras on every step, as episodes did before issue #27.", "",
         "| episode | steps | wall s | environment build s | policy s | simulator s | simulator s per step |",
         "|---|---|---|---|---|---|---|"]
    L += [f"| {e['episode']} | {e['steps']} | {e['wall_s']} | {e['env_build_s']} | {e['policy_s']} | "
          f"{e['simulator_s']} | {e['simulator_s_per_step']} |" for e in s["episodes"]]
    L += ["", f"- Same actions in all five episodes: {s['same_actions']}.",
          f"- Episode with `videos: none`: {none['wall_s']:.1f} s (goal <= 60 s), of which the policy "
          f"{none['policy_s']:.1f} s: {plans} plans of {none['policy_s'] / plans:.2f} s "
          "(a control step, section 3, plus the observation's preprocessing).",
          f"- Simulator seconds per step, `videos: none` / `videos: all`: {s['simulator_ratio_none_to_all']:.2f} "
          f"(goal <= 0.5); / before: {s['simulator_ratio_none_to_before']:.2f}.",
          f"- At {none['wall_s']:.0f} s per episode, one suite's 500 episodes take "
          f"{500 * none['wall_s'] / 3600:.1f} h on one such machine, one episode at a time."]
    return L


def quantization_section(q: dict) -> list[str]:
    from smolvla_runtime.model import MODELS as models
    c = q["calibration"]
    L = ["", "## 9. Integer precisions (full preset, ort-qnn)", "",
         f"Measured by `{q['command']}` on {q['date']}: the full default build of section 7 with "
         f"{', '.join(p for p in q['precisions'] if p not in ('fp16', 'fp32'))} added (per channel, "
         f"{c['samples']} calibration samples per graph), each task in its own `doit` process; single shots. "
         "Validation inputs and gates are the build's own (`validate`: the action head over the 10-step rollout "
         "with the same noise, judged on the final action chunk; integer gates cosine >= 0.999, action max abs < 0.05 "
         "were set from this run; this run's own integer validations used 0.99). The fp16/fp32 validations, the "
         "calibration and the w8a16 rows ran while the test suite and a profiling run shared the 2 cores: their "
         "seconds are upper bounds.", "",
         f"Calibration set (`calibrate`, shared by every integer precision): {c['seconds']:.0f} s for "
         f"{c['episodes']} LIBERO episodes of the fp32 reference policy, peak RSS {c['peak_rss_mb']:.0f} MB.", "",
         "| model | precision | context MB | vs fp16 | quantize s | quantize peak MB | cosine | max abs | PSNR dB | "
         "emulated s/call | status |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        fp16 = q["models"][m]["fp16"]["context_mb"]
        for p in q["precisions"]:
            v = q["models"][m].get(p)
            if not v:
                continue
            qs = v.get("steps", {}).get("quantize")
            quantize = f"{qs['seconds']:.0f} | {qs['peak_rss_mb']:.0f}" if qs else "- | -"
            met = v["metrics"]
            L.append(f"| {m} | {p} | {v['context_mb']:.1f} | {100 * v['context_mb'] / fp16:.0f}% | {quantize} | "
                     f"{met['cosine']:.6f} | {met['max_abs']:.3g} | {met['psnr_db']:.1f} | "
                     f"{v['htp_seconds_per_call']:.1f} | {v['status']} |")
    why = [f"{m}-{p}: {'; '.join(v['reasons'])}" for m in models for p, v in q["models"][m].items() if v["reasons"]]
    L += ["", "Reasons given for any status other than pass: " + ("; ".join(why) if why else "none") + ".", "",
          "The LLM's fp16 fallback is new in this run: validation now feeds the LLM the reference vision encoder's "
          "image embeddings instead of N(0, 1) stand-ins, and on those the fp32 reference's RMSNorm `Pow` reaches "
          "beyond the fp16 range (the saturation the guard exists for). W16A16 keeps 2 bytes per weight, so its "
          "contexts are the size of fp16's."]
    after = q.get("quantize_after_priority_order")
    if after:
        L += ["", "The quantize peaks above are onnxruntime's calibration session in its default execution order, "
              "which keeps every activation alive. The quantize task now runs it in PRIORITY_BASED order (the same "
              f"ranges). Measured afterwards on {after['date']} (`{after['command']}`): "
              + ", ".join(f"{m} {after['peak_rss_mb'][m]:.0f} MB in {after['seconds'][m]:.0f} s" for m in models) + "."]
    return L
