"""Train a model described by an ml_collections config (the same as `python -m jaxgen train`).

  python train.py --config configs/acne.py:tiny --workdir runs/acne_tiny
  python train.py --config configs/acne_classifier.py:tiny --workdir runs/cls_tiny
  python train.py --config configs/depth_emotion.py:tiny --workdir runs/depth_tiny
  python train.py --config configs/acne.py --config.data.path=/data/acne \\
      --config.train.total_kimg=5000 --workdir runs/acne

The flags and what they do: jaxgen/commands/train.py (`python train.py --help`).
"""
from jaxgen.commands.train import run

if __name__ == "__main__":
    run()
