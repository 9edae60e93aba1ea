"""Random class folders for the loader tests: the same bytes wherever a test asks for them."""
import numpy as np
from PIL import Image


def write_class_folders(src, classes, per_class: int = 4, size: int = 8, seed: int = 0) -> np.random.Generator:
    """per_class random RGB size x size PNGs in src/<class>/<class>_<i>.png for each class;
    returns the generator that drew them (a test may draw more images from it)."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (src / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(src / c / f"{c}_{i}.png")
    return rng
