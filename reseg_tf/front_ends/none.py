"""No front end (the paper's "ReSeg (no VGG)"): the first ReNet layer reads image patches."""
from reseg_tf.front_ends.base import FrontEnd, register_front_end


class NoFrontEnd(FrontEnd):
    name = "none"
    description = "no front end: the first ReNet layer reads the image (scaled to [-1, 1]) in patches"
    preprocessing = "unit"


register_front_end(NoFrontEnd())
