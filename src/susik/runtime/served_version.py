"""The model version a served reading carries: the weights that produced it and the settings that change it.

A record's own `version` hashes its weight files only, so a new decoding rule or calibration map in `record.json`
(the recognizer's looks, `decode.calibration`) or a new detector parameter served under the same name as before,
and `susik online report` mixed readings made two ways in one version. The served version adds a short digest of
every record setting that changes what a user gets, and of the detector's weights and parameters.
"""

from __future__ import annotations

import hashlib
import json

from susik.models.registry import ModelRecord
from susik.runtime.detector import DetectorRecord


def served_version(recognizer: ModelRecord, detector: DetectorRecord | None = None) -> str:
    """`recognizer-<weights, 12 hex>-<settings, 8 hex>`: the first part is the recognizer record's version (its
    weights), the second a digest of its preprocessing and decoding and of the detector's version and parameters
    (none when crops are served alone)."""
    settings = {
        "preprocess": recognizer.preprocess.model_dump(mode="json"),
        "decode": recognizer.decode.model_dump(mode="json"),
        "detector": None if detector is None else {"version": detector.version,
                                                   "params": detector.params.model_dump(mode="json")},
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{recognizer.name}-{recognizer.version[:12]}-{digest}"
