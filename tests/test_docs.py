import doctest

import configs
import efficientnet_tf.model


def test_docstring_examples_run():
    result = doctest.testmod(efficientnet_tf.model, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
    result = doctest.testmod(configs)
    assert result.attempted >= 1 and result.failed == 0
