"""The vision core the service and the tools share: model packs, the two models SecureGate runs (one small
class per model), ONNX Runtime set-up and image decoding. Imports nothing of ours besides securegate.errors.

`packs` (which files of an InsightFace pack are the detector and the recognizer), `detector` (SCRFD +
alignment), `embedder` (ArcFace), `quality` (what a face is worth to recognition), `runtime` (execution
providers, session options), `images` (decoding and limits). Batching policy lives outside, in the Embedder
deployment.
"""
