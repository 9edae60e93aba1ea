"""Acne-severity classifier, trained on an image folder (synthetic or real), as in the acne paper.

Paper settings: Adam lr 1e-4, batch 16, 15 epochs, rotation/brightness/flip
augmentation, 80/20 train/validation split, best checkpoint by validation accuracy.

  python train.py --config configs/acne_classifier.py --config.data.path=data/synthetic \\
      --workdir runs/cls_synthetic
  python evaluate.py classifier --classifier runs/cls_synthetic --test data/acne_real_test
  python train.py --config configs/acne_classifier.py:tiny --workdir runs/cls_tiny   # CPU, demo data

Models: small_cnn, resnet50v2, resnet152v2, inception_resnet_v2
(--config.model.keras_weights=<Keras ImageNet .h5> for ImageNet initialisation).
"""
from jaxgen.config import classifier, data, parse_variants


def get_config(arg: str = ""):
    opts = parse_variants(arg, ("tiny",), __file__)
    c = classifier("acne_classifier", data("folder", "data/synthetic", 224, 3, num_per_class=64))
    if "tiny" in opts:
        c.name = "acne_classifier_tiny"
        c.data.source = "demo"         # renders the demo faces first
        c.data.path = "data/demo_acne"
        c.data.resolution = 32
        c.model.name = "small_cnn"
        c.model.kwargs.width = 32      # channels of the first stage (doubling per stage)
        c.train.lr = 1e-3
    return c
