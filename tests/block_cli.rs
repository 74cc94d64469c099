//! Versioned backups of a block volume as a user runs them: `mover backup --block`, `snapshots`,
//! `verify` and `restore` on an image file (no root needed), with their exit codes and output.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    let mut c = bin();
    c.arg("mover");
    for a in args {
        c.arg(a);
    }
    c.output().expect("run pvc-backup")
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A 12 MiB sparse image with some data.
fn volume(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(12 << 20).unwrap();
    f.write_all_at(&[0x5a; 1 << 20], 1 << 20).unwrap();
    f.write_all_at(b"tail data", (12 << 20) - 9).unwrap();
}

#[test]
fn a_block_volume_is_backed_up_listed_verified_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("vol.img"), dir.path().join("backup"));
    volume(&src);
    // Without --block a regular file is not a volume: the folder backup refuses it.
    let o = run(&[&"backup", &src, &dst]);
    assert_ne!(code(&o), 0, "{}", text(&o));
    let o = run(&[&"backup", &"--block", &"--chunk-size", &"1M", &src, &dst]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        text(&o).contains("first version, 2 chunks of data"),
        "{}",
        text(&o)
    );
    std::fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .write_all_at(b"changed", 5 << 20)
        .unwrap();
    let o = run(&[
        &"backup",
        &"--block",
        &"--chunk-size",
        &"1M",
        &"--progress",
        &"json",
        &src,
        &dst,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let stdout = String::from_utf8(o.stdout.clone()).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).expect("the last line is JSON");
    assert_eq!(report["kind"], "block");
    assert_eq!(report["changed_chunks"], 1);
    assert_eq!(report["result"], "ok");
    let id = report["snapshot"].as_str().unwrap().to_string();

    let o = run(&[&"snapshots", &dst, &"--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["latest"], true);
    assert_eq!(list[0]["size"], 12 << 20);

    let o = run(&[&"verify", &dst, &"--snapshot", &"all"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // Damage the latest image: verify names the chunk and exits 23.
    let img = dst.join("snapshots").join(&id).join("volume.img");
    std::fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all_at(b"X", (1 << 20) + 5)
        .unwrap();
    let o = run(&[&"verify", &dst]);
    assert_eq!(code(&o), 23, "{}", text(&o));
    assert!(text(&o).contains("byte 1048576 (+1048576)"), "{}", text(&o));
    let o = run(&[&"snapshots", &dst]);
    assert!(text(&o).contains("failed (1 bad chunks)"), "{}", text(&o));

    // Restore the older version onto an image file, and check it with cmp.
    let older = list[1]["id"].as_str().unwrap();
    let target = dir.path().join("restored.img");
    let o = run(&[
        &"restore",
        &dst,
        &target,
        &"--snapshot",
        &older,
        &"--verify",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let older_img = dst.join("snapshots").join(older).join("volume.img");
    let cmp = Command::new("cmp").arg(&older_img).arg(&target).status();
    assert!(cmp.unwrap().success());
    // Folder options mean nothing here: usage error.
    let o = run(&[&"restore", &dst, &target, &"--subdir", &"x"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    // The restored image has a manifest of its own, which `verify` of the file checks.
    let o = run(&[&"verify", &target]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn block_options_and_mixed_folders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("vol.img"), dir.path().join("backup"));
    volume(&src);
    // --chunk-size is for block volumes.
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), b"x").unwrap();
    let o = run(&[&"backup", &"--chunk-size", &"1M", &tree, &dst]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(!dst.exists());
    // A missing source: 254, nothing created.
    let o = run(&[&"backup", &"--block", &dir.path().join("nope"), &dst]);
    assert_eq!(code(&o), 254, "{}", text(&o));
    assert!(!dst.exists());
    // A folder of file snapshots does not take block versions.
    let o = run(&[&"backup", &tree, &dst]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = run(&[&"backup", &"--block", &src, &dst]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("file tree"), "{}", text(&o));
    // --verify on restore is for block volumes.
    let o = run(&[&"restore", &dst, &dir.path().join("out"), &"--verify"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}
