"""Data in and out: safe image reading, tagged folders and zips, COCO and VOC, the shapes benchmark, real datasets."""

from wsseg.data.coco import (
    CocoDataset,
    CocoImage,
    CocoInstance,
    decode_rle,
    encode_mask,
    read_coco,
    write_coco,
)
from wsseg.data.images import IMAGE_SUFFIXES, content_hash, read_image
from wsseg.data.real import CAMVID_CLASSES, camvid, default_data_root, nuclei_images, nuclei_tiles
from wsseg.data.shapes import SHAPE_CLASSES, ShapesConfig, ShapesSample, generate, write_shapes_dataset
from wsseg.data.tagged_folder import (
    Problem,
    TaggedFolder,
    TaggedImage,
    ZipLimits,
    read_tagged_folder,
    read_tagged_zip,
    write_tagged_folder,
)
from wsseg.data.voc import VocMasks, masks_to_maps, read_voc_masks, write_voc

__all__ = [
    "CAMVID_CLASSES",
    "IMAGE_SUFFIXES",
    "SHAPE_CLASSES",
    "CocoDataset",
    "CocoImage",
    "CocoInstance",
    "Problem",
    "ShapesConfig",
    "ShapesSample",
    "TaggedFolder",
    "TaggedImage",
    "VocMasks",
    "ZipLimits",
    "camvid",
    "content_hash",
    "decode_rle",
    "default_data_root",
    "encode_mask",
    "generate",
    "masks_to_maps",
    "nuclei_images",
    "nuclei_tiles",
    "read_coco",
    "read_image",
    "read_tagged_folder",
    "read_tagged_zip",
    "read_voc_masks",
    "write_coco",
    "write_shapes_dataset",
    "write_tagged_folder",
    "write_voc",
]
