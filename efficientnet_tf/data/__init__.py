"""Input pipelines: sources, official preprocessing, augmentation, mixing."""

from efficientnet_tf.errors import import_tensorflow

import_tensorflow("efficientnet_tf.data (the input pipeline)")

from efficientnet_tf.data.augment import autoaugment, randaugment
from efficientnet_tf.data.mixing import mix_batch
from efficientnet_tf.data.pipeline import (
    AugmentState,
    DatasetInfo,
    make_datasets,
    make_eval_dataset,
    make_train_dataset,
    resolve_source,
)
from efficientnet_tf.data.preprocessing import FAMILIES
from efficientnet_tf.data.shards import shard_source, write_shards
from efficientnet_tf.data.sources import Source, Split, array_source, folder_source, tfds_source
from efficientnet_tf.data.synthetic import synthetic_source
