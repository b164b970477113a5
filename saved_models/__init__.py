"""Installed as the `reseg_tf_pretrained` package: the pretrained models' files (see `reseg_tf.pretrained`)."""
