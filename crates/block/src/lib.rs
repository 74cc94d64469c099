//! Incremental, sparse-aware copies of raw block devices and image files.
