"""The qairt toolchain: the Qualcomm AI Runtime SDK's command-line tools, as the deployed card uses them.

  sdk.py        where the SDK is, its release, each host's tool and library folders, its environment
  python.py     the interpreter the converter's compiled modules need
  compilers.py  clang-cl / lld-link / clang++, the MSVC folders, the C-runtime check of the link
  qnn_io.py     tensor names, .raw files and input lists as the tools exchange them
  htp.py        the HTP libraries qnn-net-run loads, and the backend-extension configs
  plan.py       what the chain uses on a host, looked up once for task generation (no program runs)
  run.py        running a rendered command line without a shell
  chain.py      the task actions: convert, compile, link, hostlib, context
  doctor.py     `python -m smolvla_build doctor`: all of the above for one host, checked
  converter_patch.py  runs under the SDK's Python: the converter with MATMUL_TO_FC disabled

Every command line is rendered from templates/qairt/ (smolvla_build.templates). The facts behind
each step, with their public sources, are in docs/qairt-sdk.md.
"""
