"""Generic building blocks that know nothing about experiments: registry, strict dataclass mapping, atomic
writes, statistics, environment info, device resolution, image files and tiled inference."""
