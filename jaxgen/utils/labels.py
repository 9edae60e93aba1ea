"""Class labels as the generators' conditioning vectors c."""
import numpy as np


def one_hot_labels(labels, num_classes: int) -> np.ndarray:
    """float32 [N, K]: row i is 1 at column labels[i] (int [N]); K = 0 (an unconditional G,
    c_dim 0) gives [N, 0], whatever the labels. Labels outside [-K, K) raise IndexError."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    out = np.zeros((len(labels), int(num_classes)), np.float32)
    if num_classes:
        out[np.arange(len(labels)), labels] = 1.0
    return out
