"""jaxgen.utils.labels: the conditioning vectors every generator call builds from class labels."""
import numpy as np
import pytest

from jaxgen.utils.labels import one_hot_labels


def test_one_hot_labels_rows_and_the_unconditional_case():
    c = one_hot_labels([2, 0, 2], 3)
    assert c.dtype == np.float32 and c.shape == (3, 3)
    np.testing.assert_array_equal(c, [[0, 0, 1], [1, 0, 0], [0, 0, 1]])
    assert one_hot_labels(np.array([5, 1]), 0).shape == (2, 0)      # c_dim 0: any labels
    with pytest.raises(IndexError):
        one_hot_labels([3], 3)
