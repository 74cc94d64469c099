use std::io::{self, Write};

use crate::meta::{Kind, Meta, Ts};

use super::format::{
    Chunk, INDEX_MARK, MAGIC, MAGIC_V1, MAGIC_V2, encode_entry, encode_header, kind_code, put,
    put_bytes, zigzag,
};
use super::previous::Data;

use super::*;

fn sample() -> Entry {
    Entry {
        path: b"d/\xffname".to_vec(),
        kind: Kind::File,
        mode: 0o4755,
        uid: 1001,
        gid: 3000,
        size: 1 << 40,
        mtime: Ts {
            sec: -5,
            nsec: 999_999_999,
        },
        ino: u64::MAX,
        rdev: 0,
        ctime: Some(Ts {
            sec: 1_764_000_000,
            nsec: 3,
        }),
        xattrs: [7; 16],
        hash: [9; 32],
    }
}

#[test]
fn entries_round_trip_through_the_encoding() {
    let e = sample();
    let link = Entry {
        path: b"d/l".to_vec(),
        kind: Kind::Symlink,
        ctime: None,
        hash: [1; 32],
        ..e.clone()
    };
    let dev = Entry {
        path: b"d/dev".to_vec(),
        kind: Kind::CharDevice,
        rdev: 259,
        ctime: Some(e.mtime),
        hash: [0; 32],
        ..e.clone()
    };
    let mut data = Vec::new();
    encode_header(&mut data, None);
    data.push(1);
    put_bytes(&mut data, b"d");
    for x in [&e, &link, &dev] {
        encode_entry(&mut data, &x.path[2..], x);
    }
    assert_eq!(parse(&data).unwrap(), vec![e, link, dev]);
    assert!(
        parse(&data[..data.len() - 1]).is_err(),
        "a truncated manifest is an error"
    );
    assert!(parse(b"something else").is_err());
}

/// An entry as the first format wrote it (no change time).
fn encode_v1(out: &mut Vec<u8>, name: &[u8], e: &Entry) {
    out.push(2);
    put_bytes(out, name);
    out.push(kind_code(e.kind));
    for v in [
        u64::from(e.mode),
        u64::from(e.uid),
        u64::from(e.gid),
        e.size,
    ] {
        put(out, v);
    }
    put(out, zigzag(e.mtime.sec));
    put(out, u64::from(e.mtime.nsec));
    put(out, e.ino);
    put(out, e.rdev);
    out.extend_from_slice(&e.xattrs);
    out.extend_from_slice(&e.hash);
}

#[test]
fn manifests_of_the_first_format_are_read_without_change_times() {
    let e = Entry {
        ctime: None,
        ..sample()
    };
    let mut data = MAGIC_V1.to_vec();
    data.push(1);
    put_bytes(&mut data, b"d");
    encode_v1(&mut data, b"\xffname", &e);
    assert_eq!(parse(&data).unwrap(), vec![e.clone()]);
    let p = Previous::load(data).unwrap();
    assert_eq!(p.started(), None);
    let files = p.files_in(b"d");
    assert_eq!(
        files.get(b"\xffname"),
        Some(&Entry {
            path: Vec::new(),
            ..e
        })
    );
}

#[test]
fn a_recorded_entry_is_trusted_only_with_an_old_enough_equal_change_time() {
    let started = Ts {
        sec: 1_764_000_010,
        nsec: 500,
    };
    let ctime = started.minus(CHANGE_MARGIN).minus(Ts { sec: 0, nsec: 1 });
    let e = Entry {
        ctime: Some(ctime),
        ..sample()
    };
    let encode = |started: Option<Ts>, e: &Entry| {
        let mut data = Vec::new();
        encode_header(&mut data, started);
        data.push(1);
        put_bytes(&mut data, b"d");
        encode_entry(&mut data, b"f", e);
        Previous::load(data).unwrap()
    };
    let m = Meta {
        kind: Kind::File,
        perm: e.mode,
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        blocks: 0,
        mtime: e.mtime,
        ctime,
        atime: e.mtime,
        ino: 1,
        dev: 1,
        nlink: 1,
        rdev: 0,
    };
    let p = encode(Some(started), &e);
    assert_eq!(p.started(), Some(started));
    assert!(p.files_in(b"d").unchanged(b"f", &m).is_some());
    assert!(p.files_in(b"d").unchanged(b"g", &m).is_none());
    assert!(p.files_in(b"e").unchanged(b"f", &m).is_none());
    // Any attribute that differs, a later change time, or a change time within the margin.
    let later = Ts {
        nsec: ctime.nsec + 1,
        ..ctime
    };
    for m in [
        Meta { size: 1, ..m },
        Meta { perm: 0o644, ..m },
        Meta { uid: 0, ..m },
        Meta { gid: 0, ..m },
        Meta { mtime: later, ..m },
        Meta { ctime: later, ..m },
        Meta {
            kind: Kind::Symlink,
            ..m
        },
    ] {
        assert!(p.files_in(b"d").unchanged(b"f", &m).is_none(), "{m:?}");
    }
    let recent = Entry {
        ctime: Some(later),
        ..e.clone()
    };
    let m_later = Meta { ctime: later, ..m };
    let p = encode(Some(started), &recent);
    assert!(p.files_in(b"d").unchanged(b"f", &m_later).is_none());
    // Without a start time or a change time, nothing is trusted.
    assert!(
        encode(None, &e)
            .files_in(b"d")
            .unchanged(b"f", &m)
            .is_none()
    );
    let unrecorded = Entry {
        ctime: None,
        ..e.clone()
    };
    let p = encode(Some(started), &unrecorded);
    assert!(p.files_in(b"d").unchanged(b"f", &m).is_none());
}

/// A manifest as a run writes it: several directories, one of them in several chunks.
fn recorded() -> (std::fs::File, Vec<Entry>) {
    let file = tempfile::tempfile().unwrap();
    let started = Ts {
        sec: 1_764_000_000,
        nsec: 0,
    };
    let r = Recorder::new(file.try_clone().unwrap(), started, None).unwrap();
    let mut all = Vec::new();
    for (dir, names) in [
        (&b""[..], &[&b"top"[..]][..]),
        (b"a", &[b"x", b"y"]),
        (b"a/b", &[b"z"]),
        (b"a", &[b"w"]),
    ] {
        let mut chunk = Chunk::new(dir, names.len());
        for (i, name) in names.iter().enumerate() {
            let e = Entry {
                path: crate::relpath::join(dir, name),
                size: i as u64,
                ..sample()
            };
            chunk.push(name, &e);
            all.push(e);
        }
        r.add(chunk);
        if dir == b"a" && all.len() == 3 {
            // A subdirectory's own entry comes in a chunk of its own.
            let mut chunk = Chunk::new(dir, 1);
            let e = Entry {
                path: b"a/b".to_vec(),
                kind: Kind::Dir,
                hash: [0; 32],
                ..sample()
            };
            chunk.push(b"b", &e);
            all.push(e);
            r.add(chunk);
        }
    }
    assert_eq!(r.finish().unwrap().0, 6);
    (file, all)
}

fn whole(mut f: &std::fs::File) -> Vec<u8> {
    let mut data = Vec::new();
    io::Seek::seek(&mut f, io::SeekFrom::Start(0)).unwrap();
    io::Read::read_to_end(&mut f, &mut data).unwrap();
    data
}

fn names(p: &Previous, dir: &[u8]) -> Vec<(Vec<u8>, u64)> {
    p.files_in(dir)
        .entries
        .iter()
        .map(|(n, e)| (n.to_vec(), e.size))
        .collect()
}

/// The files and symlinks of `dir` among the entries written, by name.
fn written(all: &[Entry], dir: &[u8]) -> Vec<(Vec<u8>, u64)> {
    let mut v: Vec<_> = all
        .iter()
        .filter(|e| matches!(e.kind, Kind::File | Kind::Symlink))
        .filter_map(|e| {
            let (d, name) = crate::relpath::split(&e.path);
            (d == dir).then(|| (name.to_vec(), e.size))
        })
        .collect();
    v.sort();
    v
}

const DIRS: [&[u8]; 4] = [b"", b"a", b"a/b", b"c"];

#[test]
fn a_recorded_manifest_is_read_one_directory_at_a_time_through_its_index() {
    let (file, all) = recorded();
    let data = whole(&file);
    assert!(data.starts_with(MAGIC) && data.ends_with(INDEX_MARK));
    // Readers of every entry stop at the index.
    assert_eq!(parse(&data).unwrap(), all);
    let indexed = Previous::open(file).unwrap();
    assert!(
        matches!(indexed.data, Data::File(_)),
        "read through its index"
    );
    // The chunk of the subdirectory's entry holds no file: it is not indexed.
    assert_eq!(indexed.dirs[&b"a"[..]].len(), 2);
    for dir in DIRS {
        assert_eq!(names(&indexed, dir), written(&all, dir), "{dir:?}");
    }
    assert_eq!(
        names(&indexed, b"a"),
        vec![(b"w".to_vec(), 0), (b"x".to_vec(), 0), (b"y".to_vec(), 1)]
    );
    assert_eq!(
        indexed.started(),
        Some(Ts {
            sec: 1_764_000_000,
            nsec: 0
        })
    );
}

#[test]
fn a_manifest_whose_index_does_not_hold_together_is_read_whole() {
    let (file, all) = recorded();
    let good = whole(&file);
    let n = good.len();
    let at = u64::from_le_bytes(good[n - 16..n - 8].try_into().unwrap()) as usize;
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("mark", {
            let mut d = good.clone();
            d[n - 1] ^= 1;
            d
        }),
        ("offset past the end", {
            let mut d = good.clone();
            d[n - 16..n - 8].copy_from_slice(&(n as u64).to_le_bytes());
            d
        }),
        ("offset not at the index", {
            let mut d = good.clone();
            d[n - 16..n - 8].copy_from_slice(&(at as u64 - 1).to_le_bytes());
            d
        }),
        ("index cut short", {
            let mut d = good[..at + 2].to_vec();
            d.extend_from_slice(&good[n - 16..]);
            d
        }),
        ("second format", {
            let mut d = good[..at].to_vec();
            d[..8].copy_from_slice(MAGIC_V2);
            d
        }),
    ];
    for (what, d) in damaged {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&d).unwrap();
        let p = Previous::open(f).unwrap();
        assert!(matches!(p.data, Data::Memory(_)), "{what}: read whole");
        for dir in DIRS {
            assert_eq!(names(&p, dir), written(&all, dir), "{what}: {dir:?}");
        }
    }
}
