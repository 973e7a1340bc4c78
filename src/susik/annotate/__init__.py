"""The labeling tool: a local web app to draw formula quads and type their LaTeX, plus Label Studio / COCO
interop, pre-annotation, the annotation guide and inter-annotator agreement."""
