"""A device bundle: the files a policy needs, described by manifest.json (written by `doit bundle`,
smolvla_build/packaging.py) and checked before anything is loaded: every file's sha256, the
versions of the packages the contexts were built for, and the SoC they were compiled for."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .files import ModelFileError

# 2: each model's stage declaration in the manifest and its sidecar; 3: the model preset, the HTP
# performance settings, validation's recorded arrays and gates (`check`)
FORMAT = 3


class BundleError(Exception):
    """A bundle that cannot be used here; str() names the file or setting and what is wrong."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed_version(package: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


class Bundle:
    def __init__(self, folder):
        self.dir = Path(folder)
        f = self.dir / "manifest.json"
        try:
            self.manifest = json.loads(f.read_text())
        except OSError:
            raise BundleError(f"{f}: missing (expected a bundle made by `doit bundle`)") from None
        except ValueError as e:
            raise BundleError(f"{f}: not valid JSON ({e})") from None
        if self.manifest.get("format") != FORMAT:
            raise BundleError(f"{f}: bundle format {self.manifest.get('format')!r}, this runtime reads {FORMAT}")
        self.models = self.manifest["models"]

    @property
    def preset(self):
        """The model preset the bundle's graphs were exported with (smolvla_runtime.model.Preset)."""
        from .model import Preset
        return Preset(**self.manifest["preset"])

    @property
    def soc(self):
        from .htp import Soc
        return Soc.from_dict(self.manifest["soc"])

    @property
    def htp_performance(self):
        from .htp import HtpPerformance
        return HtpPerformance.from_dict(self.manifest["htp_performance"])

    def path(self, rel: str) -> Path:
        return self.dir / rel

    def verify(self, soc_model: int | None = None) -> None:
        """Every listed file present with its sha256; the runtime's packages at the versions the bundle
        pins (the contexts' QNN version comes with onnxruntime-qnn); the SoC, when given, the bundle's."""
        for rel, digest in self.manifest["files"].items():
            p = self.path(rel)
            if not p.is_file():
                raise ModelFileError(f"{p}: missing from the bundle (manifest.json lists it)")
            if sha256(p) != digest:
                raise ModelFileError(f"{p}: corrupted or changed since `doit bundle` (sha256 differs from manifest.json)")
        for package, want in self.manifest.get("requires", {}).items():
            have = installed_version(package)
            if have is not None and have != want:
                raise BundleError(f"{package} {have} is installed, the bundle was built with {want}: "
                                  f"pip install -r {self.dir / 'requirements.txt'}")
        soc = self.soc
        if soc_model is not None and int(soc_model) != soc.soc_model:
            raise BundleError(f"this bundle's HTP contexts were compiled for soc_model {soc.soc_model} "
                              f"({soc.name or '?'}, v{soc.htp_arch}), not {soc_model}: build it with that "
                              "SoC in pipeline.yaml (soc:)")

    def runner(self, model: str, runtime: str):
        from .runners import OrtQnnRunner, ReferenceRunner
        m = self.models[model]
        if runtime == "reference":
            return ReferenceRunner(self.path(m["reference"]))
        if runtime == "ort-qnn":
            precision = self.manifest["precisions"][m["precision"]]
            return OrtQnnRunner(self.path(m["context"]), self.soc, precision, names=m.get("names"),
                                performance=self.htp_performance)
        raise BundleError(f"runtime {runtime!r}: a bundle runs on reference or ort-qnn")
