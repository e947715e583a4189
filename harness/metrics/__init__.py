"""Image quality metrics (kind ``metrics``), all computed by pyiqa: per-image PSNR/SSIM/LPIPS/DISTS/NIQE/MUSIQ/
MANIQA/CLIP-IQA and set-level FID.

``base`` (the interface), ``weights`` (which files a learned metric needs, where they are looked for), ``backend``
(pyiqa, quiet; fetching weight files its way), ``iqa`` (the registered metrics, ``build_metric``, ``metric_info``).
"""
