"""Image quality metrics (kind ``metrics``), all computed by pyiqa: per-image PSNR/SSIM/LPIPS/DISTS/NIQE/MUSIQ/
MANIQA/CLIP-IQA and set-level FID.

``base`` (the interface), ``weights`` (which files a learned metric needs, where they are looked for), ``backend``
(pyiqa, quiet and offline), ``iqa`` (the registered metrics, ``build_metric``, ``metric_info``).
"""
