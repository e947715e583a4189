"""Generic building blocks that know nothing about experiments: registry, strict dataclass mapping, atomic
writes, statistics, environment info, device resolution, image files, tiled inference and checkpoint references
(``fetch``: hf:// and https:// files, offline mode)."""
