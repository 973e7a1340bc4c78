"""The MLflow registry as the server's model source: the aliases of one registered recognizer.

Each version's folder is fetched once into the data folder and hash-checked as it loads. The detector is not
versioned in the registry: the bundled one is loaded once and shared by every version.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import cv2
import numpy as np

from susik.eval.tracking import alias_versions, fetch_version
from susik.models.registry import ModelNotFoundError, load_record
from susik.one_formula import OneFormulaReader
from susik.pipeline import Pipeline
from susik.serve.app import Pipelines
from susik.serve.settings import Settings


def version_label(name: str, version: str) -> str:
    """The model version that responses and stored requests carry for a registry version."""
    return f"{name}@v{version}"


def _warm_up_crop() -> np.ndarray:
    crop = np.full((48, 160), 255, np.uint8)
    cv2.putText(crop, "x+1=2", (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2, cv2.LINE_AA)
    return crop


class RegistrySource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.registry_model
        self._detector = None
        self._detector_missing: str | None = None
        self._detector_lock = threading.Lock()

    def aliases(self) -> Mapping[str, str]:
        return alias_versions(self.name, self.settings.tracking_uri)

    def load(self, version: str) -> Pipelines:
        from susik.runtime.recognizer import OnnxRecognizer

        folder = fetch_version(
            self.name, version, self.settings.data_dir / "registry", self.settings.tracking_uri
        )
        recognizer = OnnxRecognizer.from_record(load_record(folder), threads=self.settings.onnx_threads)
        crop, label = Pipeline.for_crops(recognizer), version_label(self.name, version)
        crop([_warm_up_crop()])  # a fresh session's first run allocates its buffers: not in a user's request
        detector = self._bundled_detector()
        if detector is None:
            return Pipelines(None, crop, label, page_unavailable=self._detector_missing, recognizer_dir=folder)
        from susik.runtime.orient import DeskewOrienter

        page = Pipeline(detector, recognizer, DeskewOrienter())
        return Pipelines(page, OneFormulaReader(page, crop), label, recognizer_dir=folder)

    def _bundled_detector(self):
        with self._detector_lock:
            if self._detector is None and self._detector_missing is None:
                from susik.runtime.detector import OnnxDetector

                try:
                    self._detector = OnnxDetector.load(threads=self.settings.onnx_threads)
                except ModelNotFoundError as missing:  # crops still serve; page mode says why not
                    self._detector_missing = str(missing)
            return self._detector
