"""`securegate eval`: thresholds, DET curves and identification accuracy measured on a folder of labelled
photos, through the service's own image decoding, detector and embedder.

One module per concern: `metrics` (pure maths), `dataset` (the photo folder), `run` (inference over it),
`report` (the numbers and their Markdown), `plots` (DET curve, histograms), `files` (what is written), `apply` (write a threshold
through the admin API).
"""
