"""The served model version names the weights and changes with every setting that changes a reading."""

from susik.models.registry import TrainingInfo, load_record
from susik.runtime.decoding import ConfidenceCalibration, with_rescue
from susik.runtime.detector import DetectorRecord, DetectParams
from susik.runtime.served_version import served_version


def detector_record(version: str = "d" * 64, **params) -> DetectorRecord:
    return DetectorRecord(version=version, created="2026-12-07T00:00:00Z", architecture={}, parameters=1, files={},
                          params=DetectParams(**params), quantization="none",
                          training=TrainingInfo(command="test", config={}, step=0, best_metric=None))


def test_the_version_names_the_weights_and_is_stable(tiny_bundle):
    record = load_record(tiny_bundle)
    version = served_version(record, detector_record())
    name, weights, settings = version.rsplit("-", 2)
    assert name == record.name and weights == record.version[:12] and len(settings) == 8
    assert served_version(load_record(tiny_bundle), detector_record()) == version


def test_every_setting_that_changes_a_reading_is_a_new_version(tiny_bundle):
    record = load_record(tiny_bundle)
    base = served_version(record, detector_record(closeup_letters_above=26))
    calibrated = record.model_copy(update={"decode": record.decode.model_copy(
        update={"calibration": ConfidenceCalibration(geomean=1.0, minimum=1.0, bias=-1.0)})})
    looks = record.model_copy(update={"decode": with_rescue(record.decode, widen_below=0.9)})
    flattened = record.model_copy(update={"preprocess": record.preprocess.model_copy(update={"flatten": 0.3})})
    versions = {
        base,
        served_version(calibrated, detector_record(closeup_letters_above=26)),
        served_version(looks, detector_record(closeup_letters_above=26)),
        served_version(flattened, detector_record(closeup_letters_above=26)),
        served_version(record, detector_record(closeup_letters_above=26, closeup_few_letters_above=52)),
        served_version(record, detector_record("e" * 64, closeup_letters_above=26)),
        served_version(record),  # crops alone, no detector
    }
    assert len(versions) == 7
    assert all(version.startswith(f"{record.name}-{record.version[:12]}-") for version in versions)
