"""Defaults shared by every StyleGAN2-ADA config (NVIDIA's values unless noted).

Durations are in kimg (thousands of real images shown to D), as in the papers.
Each config file calls `stylegan2_ada()` and overrides what differs.
"""
import ml_collections


def stylegan2_ada() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "folder"        # 'folder' | 'demo' | 'tfds'
    c.data.path = ""                # image folder (class sub-folders) or demo output dir
    c.data.tfds_name = ""           # for source='tfds' (must be prepared offline)
    c.data.tfds_data_dir = ""
    c.data.split = "train"
    c.data.resolution = 256         # power of two; images are resized/cropped to it
    c.data.channels = 3             # 1 (grayscale) or 3 (RGB)
    c.data.conditional = True       # use class labels (c_dim = number of classes)
    c.data.mirror = True            # random x-flips of the reals
    c.data.cache_dir = "data/.cache"
    c.data.demo_num_per_class = 256  # for source='demo'
    c.data.demo_seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.z_dim = 512
    c.model.w_dim = 512
    c.model.mapping_layers = 8
    c.model.channel_base = 32768
    c.model.channel_max = 512
    c.model.conv_clamp = ml_collections.FieldReference(None, field_type=float)
    c.model.mbstd_group_size = 4
    c.model.dtype = "float32"       # compute dtype ('bfloat16' on TPU/GPU for speed)
    c.model.num_lowp_res = 4        # highest resolutions computed in `dtype`
    return c
