"""Acne-severity classifier, trained on an image folder (synthetic or real), as in the acne paper.

Paper settings: Adam lr 1e-4, batch 16, 15 epochs, rotation/brightness/flip
augmentation, 80/20 train/validation split, best checkpoint by validation accuracy.

  python train.py --config configs/acne_classifier.py --config.data.path=data/synthetic \\
      --workdir runs/cls_synthetic
  python evaluate.py --classifier runs/cls_synthetic --test data/acne_real_test
  python train.py --config configs/acne_classifier.py:tiny --workdir runs/cls_tiny   # CPU, demo data

Models: small_cnn, resnet50v2, resnet152v2, inception_resnet_v2
(--config.model.keras_weights=<Keras ImageNet .h5> for ImageNet initialisation).
"""
import ml_collections

from jaxgen.config import data, parse_variants


def get_config(arg: str = ""):
    opts = parse_variants(arg, ("tiny",), __file__)
    c = ml_collections.ConfigDict()
    c.task = "classifier"
    c.name = "acne_classifier"
    c.seed = 0
    c.data = data("folder", "data/synthetic", 224, 3, num_per_class=64)  # or 'demo' (renders first)
    c.data.val_fraction = 0.2
    c.data.val_path = ""           # a separate validation folder instead of the split
    c.model = ml_collections.ConfigDict()
    c.model.name = "resnet50v2"
    c.model.keras_weights = ""
    c.model.kwargs = ml_collections.ConfigDict()
    c.train = ml_collections.ConfigDict()
    c.train.lr = 1e-4
    c.train.batch_size = 16
    c.train.epochs = 15
    c.augment = ml_collections.ConfigDict()
    c.augment.max_degrees = 15.0
    c.augment.max_brightness = 0.1
    c.augment.flip = True
    if "tiny" in opts:
        c.name = "acne_classifier_tiny"
        c.data.source = "demo"
        c.data.path = "data/demo_acne"
        c.data.resolution = 32
        c.model.name = "small_cnn"
        c.model.kwargs.width = 32      # channels of the first stage (doubling per stage)
        c.train.lr = 1e-3
    return c
