"""susik (수식): phone photos of school math -> formula regions and LaTeX."""

__version__ = "0.1.0"


def __getattr__(name: str):  # `susik.Pipeline` without importing OpenCV on `import susik`
    if name == "Pipeline":
        from susik.pipeline import Pipeline

        return Pipeline
    if name == "Recognizer":
        from susik.runtime.recognizer import OnnxRecognizer

        return OnnxRecognizer
    raise AttributeError(f"module 'susik' has no attribute {name!r}")
