"""Score generated images, classifiers and synthetic datasets (the same as `python -m jaxgen evaluate`).

  python evaluate.py fid --checkpoint runs/acne_tiny --real data/demo_acne --feature_net random_inception
  python evaluate.py classifier --classifier runs/cls_synthetic,runs/cls_real --test data/demo_acne_test
  python evaluate.py utility --real_train data/demo_acne --synthetic runs/pipeline/synthetic \\
      --test data/demo_acne_test --classifier_config configs/acne_classifier.py:tiny --out runs/utility
  python evaluate.py datasheet --synthetic runs/pipeline/synthetic --real data/demo_acne \\
      --holdout data/demo_acne_test --feature_net random_inception --identity pixel --out runs/sheet
  python evaluate.py compare --config configs/depth_compare.py:tiny --out runs/depth_compare

Each mode takes only its own flags (`python evaluate.py MODE --help`); the modes and what
they write: jaxgen/commands/evaluate.py.
"""
from jaxgen.commands.evaluate import run

if __name__ == "__main__":
    run()
