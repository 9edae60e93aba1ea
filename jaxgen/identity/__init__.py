"""Who a face is: identity embedders and the nearest-identity search of the privacy checks.

`embedder_interface` (what an embedder is; the place to plug in another), `dlib_embedder`
(dlib's 128-d face descriptor), `pixel_embedder` (a near-copy check, not an identity model),
`near_copy_calibration` (the pixel threshold from the training set), `search`
(`nearest_identity`, `IdentityCheck`, `make_embedder`, the de-identification report).
Used by the GA's fitness and export (jaxgen.evolve), the datasheet's measures
(jaxgen.metrics) and the workflows; it imports only jaxgen.errors and jaxgen.utils.
Import the submodules directly.
"""
