"""susik (수식): phone photos of school math -> formula regions and LaTeX."""

__version__ = "0.1.0"
