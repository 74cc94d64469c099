//! Integration tests of block copies: image files everywhere, loop devices as root.

#[path = "cases/devices.rs"]
mod devices;
#[path = "cases/files.rs"]
mod files;
#[path = "cases/util.rs"]
mod util;
#[path = "cases/versions.rs"]
mod versions;
#[path = "cases/versions_fs.rs"]
mod versions_fs;
