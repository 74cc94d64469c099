//! The names of a backup target's folders and files, and where each one is for a target `DST`.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use crate::{Error, Result, SnapshotId};

const fn text(name: &'static CStr) -> &'static str {
    match std::str::from_utf8(name.to_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("layout names are ASCII"),
    }
}

/// The store's state folder in a target (and in an unprivileged snapshot, for the owners it could
/// not apply), as a C string for `openat`.
pub const STATE_DIR_C: &CStr = c".pvc-backup";
/// The store's state folder, `.pvc-backup`.
pub const STATE_DIR: &str = text(STATE_DIR_C);
/// The folder of snapshots, in the target and in its state folder (for their records).
pub const SNAPSHOTS_C: &CStr = c"snapshots";
/// The folder of snapshots, `snapshots`.
pub const SNAPSHOTS: &str = text(SNAPSHOTS_C);
/// The symlink to the newest snapshot, as a C string.
pub const LATEST_C: &CStr = c"latest";
/// The symlink to the newest snapshot, `latest`; also the name users give for it.
pub const LATEST: &str = text(LATEST_C);
/// Where the new `latest` link is made before it is renamed over the old one.
pub const LATEST_TMP_C: &CStr = c".latest.tmp";
/// [`LATEST_TMP_C`] as text.
pub const LATEST_TMP: &str = text(LATEST_TMP_C);
/// The lock file in the state folder.
pub const LOCK_C: &CStr = c"lock";
/// The file in the state folder that marks a target of block versions.
pub const BLOCK_MARKER: &str = "block-volume";
/// The image file in a block version's folder.
pub const IMAGE: &str = "volume.img";
/// The manifest of a mirror, in the state folder, as a C string.
pub const MIRROR_MANIFEST_C: &CStr = c"manifest";
/// The manifest of a mirror, `manifest`.
pub const MIRROR_MANIFEST: &str = text(MIRROR_MANIFEST_C);
/// Where the manifest of a mirror is written before it is renamed over the old one.
pub const MIRROR_MANIFEST_TMP_C: &CStr = c"manifest.tmp";
/// The summary of the last mirror run (`sync`), in the state folder.
pub const LAST_SYNC_C: &CStr = c"last-sync.json";
/// The owners, modes and attributes an unprivileged run could not apply, in the state folder of
/// a mirror or of a snapshot.
pub const METADATA_LOG_C: &CStr = c"metadata.jsonl";
/// Where [`METADATA_LOG_C`] is written before it is renamed into place.
pub const METADATA_LOG_TMP_C: &CStr = c"metadata.jsonl.tmp";
/// How the name of a snapshot being made starts (then its id).
pub const PARTIAL_PREFIX: &str = ".partial-";
/// How a manifest being written ends; one left by a run that died is removed.
pub const MANIFEST_TMP_SUFFIX: &str = ".manifest.tmp";

/// The name of the folder snapshot `id` is made in.
pub fn partial(id: &SnapshotId) -> String {
    format!("{PARTIAL_PREFIX}{id}")
}

/// Whether a name in `snapshots/` is a snapshot being made (or left by a run that died).
pub fn is_partial(name: &[u8]) -> bool {
    name.starts_with(PARTIAL_PREFIX.as_bytes())
}

/// The path of snapshot `id` inside the target, `snapshots/ID`: what `latest` holds when it points
/// at it, and the sub-path a workload mounts to use it.
pub fn snapshot_path(id: &str) -> String {
    format!("{SNAPSHOTS}/{id}")
}

/// The time of the snapshot folder `name` in `snapshots/`, if it is one: a name that begins with
/// an id. Folders the mover makes are named exactly by their id; a folder copied next to one by
/// hand (`2026-11-25T02-00-00Z.old`) has its time too, and is listed, kept and retired like it.
pub fn snapshot_time(name: &str) -> Option<SnapshotId> {
    SnapshotId::parse(name.get(..SnapshotId::LEN)?)
}

/// The complete snapshots among the names in a `snapshots/` folder, with their times, newest
/// first.
pub fn newest_first<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Vec<(String, SnapshotId)> {
    let mut v: Vec<(String, SnapshotId)> = names
        .into_iter()
        .filter_map(|n| {
            let name = std::str::from_utf8(n).ok()?;
            Some((name.to_string(), snapshot_time(name)?))
        })
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0));
    v
}

/// The snapshot id a `latest` link's text names.
pub fn latest_id(link: &str) -> String {
    link.trim_start_matches(&format!("{SNAPSHOTS}/"))
        .to_string()
}

/// The name of the record of the run that made snapshot `id`, in the records folder.
pub fn run_record(id: &str) -> String {
    format!("{id}.json")
}

/// The name of snapshot `id`'s manifest, in the records folder.
pub fn manifest(id: &str) -> String {
    format!("{id}.manifest")
}

/// The name snapshot `id`'s manifest is written under before it is complete.
pub fn manifest_tmp(id: &str) -> String {
    format!("{id}{MANIFEST_TMP_SUFFIX}")
}

/// The name of snapshot `id`'s last verification record, in the records folder.
pub fn verify_record(id: &str) -> String {
    format!("{id}.verify.json")
}

/// Every record a snapshot may have, removed with it when it is retired.
pub fn records(id: &str) -> [String; 3] {
    [run_record(id), manifest(id), verify_record(id)]
}

/// A backup target: the folder `DST` a mirror, snapshots or block versions are kept in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    root: PathBuf,
}

impl Target {
    /// The target at `dst`.
    pub fn new(dst: &Path) -> Target {
        Target {
            root: dst.to_path_buf(),
        }
    }

    /// The target folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `DST/.pvc-backup`.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// `DST/snapshots`.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join(SNAPSHOTS)
    }

    /// `DST/snapshots/ID`.
    pub fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.snapshots_dir().join(id)
    }

    /// `DST/snapshots/.partial-ID`.
    pub fn partial_dir(&self, id: &SnapshotId) -> PathBuf {
        self.snapshots_dir().join(partial(id))
    }

    /// `DST/snapshots/ID/volume.img`.
    pub fn image(&self, id: &str) -> PathBuf {
        self.snapshot_dir(id).join(IMAGE)
    }

    /// `DST/latest`.
    pub fn latest_link(&self) -> PathBuf {
        self.root.join(LATEST)
    }

    /// `DST/.latest.tmp`.
    pub fn latest_tmp(&self) -> PathBuf {
        self.root.join(LATEST_TMP)
    }

    /// `DST/.pvc-backup/snapshots`, where the records of the snapshots are.
    pub fn records_dir(&self) -> PathBuf {
        self.state_dir().join(SNAPSHOTS)
    }

    /// `DST/.pvc-backup/snapshots/ID.json`.
    pub fn run_record(&self, id: &str) -> PathBuf {
        self.records_dir().join(run_record(id))
    }

    /// `DST/.pvc-backup/snapshots/ID.manifest`.
    pub fn manifest(&self, id: &str) -> PathBuf {
        self.records_dir().join(manifest(id))
    }

    /// `DST/.pvc-backup/snapshots/ID.verify.json`.
    pub fn verify_record(&self, id: &str) -> PathBuf {
        self.records_dir().join(verify_record(id))
    }

    /// `DST/.pvc-backup/manifest`, the manifest of a mirror.
    pub fn mirror_manifest(&self) -> PathBuf {
        self.state_dir().join(MIRROR_MANIFEST)
    }

    /// `DST/.pvc-backup/block-volume`.
    pub fn block_marker(&self) -> PathBuf {
        self.state_dir().join(BLOCK_MARKER)
    }

    /// Whether the target holds versions of a block volume rather than snapshots of a tree.
    pub fn holds_block_versions(&self) -> bool {
        self.block_marker().is_file()
    }

    /// Marks the target as holding versions of a block volume.
    pub fn mark_block_versions(&self) -> std::io::Result<()> {
        std::fs::write(
            self.block_marker(),
            "This folder holds versions of a block volume made by `pvc-backup mover backup`.\n",
        )
    }

    /// Whether the target has a snapshots folder (a mirror has none).
    pub fn has_snapshots(&self) -> bool {
        self.snapshots_dir().is_dir()
    }

    /// The snapshot `latest` points at, if it points at one.
    pub fn latest(&self) -> Option<String> {
        let link = std::fs::read_link(self.latest_link()).ok()?;
        Some(latest_id(link.to_str()?))
    }

    /// Points `latest` at snapshot `id`, replacing the link in one rename.
    pub fn point_latest(&self, id: &str) -> std::io::Result<()> {
        let tmp = self.latest_tmp();
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(snapshot_path(id), &tmp)
            .and_then(|()| std::fs::rename(&tmp, self.latest_link()))
    }

    /// The complete snapshots (names that are ids), newest first.
    pub fn list_ids(&self) -> Result<Vec<String>> {
        let snaps = self.snapshots_dir();
        let show = || snaps.display().to_string();
        let dir = std::fs::read_dir(&snaps).map_err(|e| Error::io("cannot open", show(), e))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| Error::io("cannot read", show(), e))?;
            names.push(entry.file_name().into_encoded_bytes());
        }
        Ok(newest_first(names.iter().map(Vec::as_slice))
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Resolves a snapshot id, or `latest`, to its folder.
    pub fn resolve(&self, which: &str) -> Result<PathBuf> {
        let dst = self.root.display();
        if which == LATEST {
            let link = std::fs::read_link(self.latest_link()).map_err(|e| {
                Error::Usage(format!(
                    "{dst} has no latest snapshot ({e}); is it a backup made by `pvc-backup \
                     mover backup`?"
                ))
            })?;
            let id = link
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return self.resolve(&id);
        }
        if snapshot_time(which).is_none() || which.contains('/') {
            return Err(Error::Usage(format!(
                "{which:?} is not a snapshot name (like 2026-11-25T02-00-00Z) nor `latest`; \
                 `pvc-backup mover snapshots {dst}` lists them"
            )));
        }
        let path = self.snapshot_dir(which);
        if !path.is_dir() {
            return Err(Error::Usage(format!(
                "no snapshot {which} in {dst}; `pvc-backup mover snapshots {dst}` lists them"
            )));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_documented_ones() {
        let t = Target::new(Path::new("/b"));
        let id = "2026-11-25T02-00-00Z";
        assert_eq!(
            t.snapshot_dir(id),
            Path::new("/b/snapshots/2026-11-25T02-00-00Z")
        );
        assert_eq!(
            t.partial_dir(&SnapshotId::parse(id).unwrap()),
            Path::new("/b/snapshots/.partial-2026-11-25T02-00-00Z")
        );
        assert_eq!(
            t.image(id),
            Path::new("/b/snapshots/2026-11-25T02-00-00Z/volume.img")
        );
        assert_eq!(t.latest_link(), Path::new("/b/latest"));
        assert_eq!(t.block_marker(), Path::new("/b/.pvc-backup/block-volume"));
        assert_eq!(t.mirror_manifest(), Path::new("/b/.pvc-backup/manifest"));
        assert_eq!(
            records(id),
            [
                "2026-11-25T02-00-00Z.json",
                "2026-11-25T02-00-00Z.manifest",
                "2026-11-25T02-00-00Z.verify.json"
            ]
        );
        assert_eq!(snapshot_path(id), "snapshots/2026-11-25T02-00-00Z");
        assert_eq!(latest_id("snapshots/2026-11-25T02-00-00Z"), id);
    }

    #[test]
    fn lists_complete_snapshots_newest_first_and_resolves_latest() {
        let d = tempfile::tempdir().unwrap();
        let t = Target::new(d.path());
        for name in [
            "2026-11-24T02-00-00Z",
            "2026-11-26T02-00-00Z",
            ".partial-2026-11-27T02-00-00Z",
            "notes",
        ] {
            std::fs::create_dir_all(d.path().join("snapshots").join(name)).unwrap();
        }
        assert_eq!(
            t.list_ids().unwrap(),
            ["2026-11-26T02-00-00Z", "2026-11-24T02-00-00Z"]
        );
        t.point_latest("2026-11-26T02-00-00Z").unwrap();
        assert_eq!(
            std::fs::read_link(d.path().join("latest")).unwrap(),
            Path::new("snapshots/2026-11-26T02-00-00Z")
        );
        assert_eq!(t.latest().as_deref(), Some("2026-11-26T02-00-00Z"));
        assert_eq!(
            t.resolve("latest").unwrap(),
            d.path().join("snapshots/2026-11-26T02-00-00Z")
        );
        for bad in [
            "../x",
            "a/b",
            "2026-11-26T02-00-00Z/../..",
            ".partial-2026-11-27T02-00-00Z",
            "2026-11-25T02-00-00Z",
        ] {
            assert!(matches!(t.resolve(bad), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn a_folder_named_by_an_id_and_more_is_a_snapshot_of_that_time() {
        let id = SnapshotId::parse("2026-11-25T02-00-00Z").unwrap();
        assert_eq!(snapshot_time("2026-11-25T02-00-00Z"), Some(id));
        assert_eq!(snapshot_time("2026-11-25T02-00-00Z.old"), Some(id));
        for name in [
            "2026-11-25T02-00-00",
            "2026-13-25T02-00-00Z",
            ".partial-2026-11-25T02-00-00Z",
            "latest",
            "",
        ] {
            assert_eq!(snapshot_time(name), None, "{name:?}");
        }
        let names: [&[u8]; 4] = [
            b"2026-11-25T02-00-00Z",
            b"2026-11-25T02-00-00Z.old",
            b"2026-11-26T02-00-00Z",
            b"notes",
        ];
        let listed: Vec<String> = newest_first(names).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            listed,
            [
                "2026-11-26T02-00-00Z",
                "2026-11-25T02-00-00Z.old",
                "2026-11-25T02-00-00Z"
            ]
        );
    }
}
