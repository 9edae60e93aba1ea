"""Handcrafted image features and a gradient-boosted-trees classifier on them.

* :mod:`jaxgen.features.handcrafted` -- LBP / HOG / Sobel / intensity
  descriptors in numpy (scikit-image definitions), ``extract_features``;
* :mod:`jaxgen.features.xgb` -- XGBoost on those features, evaluation with the
  project's metrics, and the synthetic-train / real-test experiment.

Import the submodules directly; this package imports nothing heavy.
"""
