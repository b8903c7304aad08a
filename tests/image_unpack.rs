//! Layer extraction (issue 10 item 3): layers built offline with Python's
//! `tarfile` (hostile ones too) are put into a real store and unpacked with
//! `berth::images::unpack`; nothing may ever be written outside the layer
//! dir, refused layers leave nothing, and whiteouts become overlayfs's.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::RwLock;

use berth::images::manifest::{Descriptor, OCI_CONFIG, OCI_MANIFEST};
use berth::images::unpack::{self, EntryError, UnpackError};
use berth::images::{Compression, Digest, ImageStore, Reference, StoredImage};
use serde_json::{json, Value};

/// Tests that count extractions (a process-wide counter) run alone; the
/// others share.
static COUNTING: RwLock<()> = RwLock::new(());

/// Builds a tar with Python's `tarfile` from a list of entries:
/// `{"name", "type": file|dir|symlink|link|char|block|fifo, "data",
/// "target", "mode", "uid", "gid", "mtime", "major", "minor", "xattrs"}`.
/// Names are written exactly as given (`tarfile` does not clean them).
fn python_tar(entries: &Value) -> Vec<u8> {
    const SCRIPT: &str = r#"
import io, json, sys, tarfile
spec = json.load(sys.stdin)
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
    for e in spec:
        info = tarfile.TarInfo(e["name"])
        kind = e.get("type", "file")
        info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                     "symlink": tarfile.SYMTYPE, "link": tarfile.LNKTYPE,
                     "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
                     "fifo": tarfile.FIFOTYPE}[kind]
        info.mode = e.get("mode", 0o755 if kind == "dir" else 0o644)
        info.uid = e.get("uid", 0)
        info.gid = e.get("gid", 0)
        info.mtime = e.get("mtime", 1700000000)
        info.linkname = e.get("target", "")
        info.devmajor = e.get("major", 0)
        info.devminor = e.get("minor", 0)
        for k, v in e.get("xattrs", {}).items():
            info.pax_headers["SCHILY.xattr." + k] = v
        data = e.get("data", "").encode()
        if kind == "file":
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        else:
            tar.addfile(info)
sys.stdout.buffer.write(out.getvalue())
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (installed by .ci/run)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(entries.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python tarfile failed");
    out.stdout
}

/// A benign one-file tar, built here (a python3 per layer is slow).
fn small_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, name, data).unwrap();
    tar.into_inner().unwrap()
}

fn compress(tar: &[u8], compression: Compression) -> (Vec<u8>, &'static str) {
    match compression {
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).unwrap();
            (
                gz.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Compression::Zstd => (
            zstd::stream::encode_all(tar, 1).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        Compression::Plain => (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
    }
}

/// Puts an image of `layers` (lowest first) into `store` as `name`; the
/// config's diff_ids are the tars' sha256 unless `diff_ids` overrides them.
fn put_image(
    store: &ImageStore,
    name: &str,
    layers: &[(Vec<u8>, Compression)],
    diff_ids: Option<Vec<Digest>>,
) -> StoredImage {
    let mut descriptors = Vec::new();
    let mut real_diff_ids = Vec::new();
    for (tar, compression) in layers {
        real_diff_ids.push(Digest::of(tar));
        let (blob, media_type) = compress(tar, *compression);
        let digest = store.put_document(&blob).unwrap();
        descriptors.push(
            json!({"mediaType": media_type, "digest": digest.to_string(), "size": blob.len()}),
        );
    }
    let diff_ids = diff_ids.unwrap_or(real_diff_ids);
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()}
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = store.put_document(&config).unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": descriptors,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let digest = store.put_document(&manifest).unwrap();
    let desc = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest,
        size: manifest.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    };
    store.tag(&Reference::parse(name).unwrap(), &desc).unwrap()
}

/// Every path below `dir` (relative), symlinks not followed.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(
                path.strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let c_name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of the size passed.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

fn is_whiteout(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

struct Fixture {
    dir: tempfile::TempDir,
    store: ImageStore,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        Fixture { dir, store }
    }

    fn layers_root(&self) -> PathBuf {
        unpack::layers_root(&self.store)
    }

    /// Unpacked layer dirs (hex names only).
    fn layer_dirs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.layers_root()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    fn temp_dirs(&self) -> Vec<String> {
        tree(&self.layers_root().join(".tmp"))
    }
}

#[test]
fn a_layer_is_unpacked_with_its_metadata() {
    let _shared = COUNTING.read().unwrap();
    if !common::is_root() {
        common::skip(
            "a_layer_is_unpacked_with_its_metadata",
            "needs root (chown, mknod)",
        );
        return;
    }
    let f = Fixture::new();
    let tar = python_tar(&json!([
        {"name": "./", "type": "dir", "mode": 0o755, "mtime": 1000},
        {"name": "bin/", "type": "dir", "mode": 0o711, "mtime": 1100},
        {"name": "bin/su", "data": "#!/bin/sh\n", "mode": 0o4755, "uid": 0, "gid": 0, "mtime": 1200},
        {"name": "bin/sg", "data": "x", "mode": 0o2750, "uid": 1234, "gid": 5678},
        {"name": "bin/ping", "data": "p", "mode": 0o755,
         "xattrs": {"user.note": "hello", "trusted.overlay.redirect": "/etc", "security.selinux": "x"}},
        {"name": "bin/sh", "type": "symlink", "target": "/bin/busybox", "uid": 7, "gid": 8},
        {"name": "bin/sh2", "type": "link", "target": "bin/su"},
        {"name": "dev/null", "type": "char", "major": 1, "minor": 3, "mode": 0o666},
        {"name": "dev/sda", "type": "block", "major": 8, "minor": 0, "mode": 0o660},
        {"name": "dev/fifo", "type": "fifo", "mode": 0o600},
        {"name": "etc/deep/er/file", "data": "implicit parents"},
        {"name": "tmp/", "type": "dir", "mode": 0o1777, "mtime": 1300},
    ]));
    let image = put_image(&f.store, "t/meta:1", &[(tar, Compression::Gzip)], None);
    let dirs = unpack::unpacked_layers(&f.store, &image).unwrap();
    assert_eq!(dirs.len(), 1);
    let chain = unpack::chain_ids(&image.layers);
    assert_eq!(dirs[0], unpack::layer_dir(&f.store, &chain[0]));
    assert_eq!(chain[0], image.layers[0].diff_id);
    let root = &dirs[0];
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(meta("").mode() & 0o7777, 0o755);
    assert_eq!(meta("bin").mode() & 0o7777, 0o711);
    assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755);
    assert_eq!(std::fs::read(root.join("bin/su")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(meta("bin/su").mtime(), 1200);
    let sg = meta("bin/sg");
    assert_eq!(
        (sg.mode() & 0o7777, sg.uid(), sg.gid()),
        (0o2750, 1234, 5678)
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!((meta("bin/sh").uid(), meta("bin/sh").gid()), (7, 8));
    assert_eq!(meta("bin/sh2").ino(), meta("bin/su").ino());
    let null = meta("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (null.rdev(), null.mode() & 0o7777),
        (libc::makedev(1, 3), 0o666)
    );
    assert!(meta("dev/sda").file_type().is_block_device());
    assert_eq!(meta("dev/sda").rdev(), libc::makedev(8, 0));
    assert!(meta("dev/fifo").file_type().is_fifo());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/deep/er/file")).unwrap(),
        "implicit parents"
    );
    assert_eq!(meta("etc/deep").mode() & 0o7777, 0o755);
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
    // Directory mtimes are set after their entries were made.
    assert_eq!(meta("").mtime(), 1000);
    assert_eq!(meta("bin").mtime(), 1100);
    assert_eq!(meta("tmp").mtime(), 1300);
    // user.* xattrs kept; trusted.* (overlay metadata) and others dropped.
    assert_eq!(
        xattr(&root.join("bin/ping"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        xattr(&root.join("bin/ping"), "trusted.overlay.redirect"),
        None
    );
    assert!(f.temp_dirs().is_empty());
}

#[test]
fn every_compression_unpacks_and_a_layer_is_shared_by_images() {
    let _shared = COUNTING.read().unwrap();
    let f = Fixture::new();
    let base = python_tar(&json!([{"name": "base", "data": "b"}]));
    for (i, compression) in [Compression::Gzip, Compression::Zstd, Compression::Plain]
        .into_iter()
        .enumerate()
    {
        let top = python_tar(&json!([{"name": format!("top{i}"), "data": "t"}]));
        let image = put_image(
            &f.store,
            &format!("t/c:{i}"),
            &[(base.clone(), compression), (top, compression)],
            None,
        );
        let dirs = unpack::unpacked_layers(&f.store, &image).unwrap();
        assert_eq!(tree(&dirs[0]), ["base"]);
        assert_eq!(tree(&dirs[1]), [format!("top{i}")]);
    }
    // One base layer dir (same chain ID) and three tops.
    assert_eq!(f.layer_dirs().len(), 4);
}

/// The hostile layers of the issue, each refused with an error naming the
/// entry, and nothing written outside the store nor left in it.
#[test]
fn hostile_layers_are_refused_and_write_nothing() {
    let _shared = COUNTING.read().unwrap();
    let f = Fixture::new();
    // A host directory the layers aim at.
    let host = tempfile::tempdir().unwrap();
    let host_dir = host.path().to_str().unwrap().to_owned();
    std::fs::write(host.path().join("shadow"), "secret").unwrap();
    let abs = format!("/berth-unpack-test-{}", std::process::id());
    let abs_file = format!("{abs}/file");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "dotdot",
            json!([{"name": "../escape", "data": "x"}]),
            "../escape",
        ),
        (
            "dotdot deep",
            json!([{"name": "a/", "type": "dir"}, {"name": "a/../../../escape", "data": "x"}]),
            "a/../../../escape",
        ),
        (
            "absolute",
            json!([{"name": format!("{abs}/file"), "data": "x"}]),
            &abs_file,
        ),
        (
            "file through a symlink",
            json!([{"name": "evil", "type": "symlink", "target": host_dir},
                   {"name": "evil/file", "data": "x"}]),
            "evil/file",
        ),
        (
            "dir through a symlink",
            json!([{"name": "evil", "type": "symlink", "target": host_dir},
                   {"name": "evil/sub/", "type": "dir"}]),
            "evil/sub/",
        ),
        (
            "file through a relative symlink",
            json!([{"name": "up", "type": "symlink", "target": "../../../../../../.."},
                   {"name": "up/escape", "data": "x"}]),
            "up/escape",
        ),
        (
            "hard link out",
            json!([{"name": "shadow", "type": "link", "target": "../../etc/shadow"}]),
            "shadow",
        ),
        (
            "hard link absolute",
            json!([{"name": "shadow", "type": "link", "target": format!("{host_dir}/shadow")}]),
            "shadow",
        ),
        (
            "hard link through a symlink dir",
            json!([{"name": "evil", "type": "symlink", "target": host_dir},
                   {"name": "shadow", "type": "link", "target": "evil/shadow"}]),
            "shadow",
        ),
        (
            "whiteout dir",
            json!([{"name": ".wh.../x", "data": "x"}]),
            ".wh.../x",
        ),
        (
            "whiteout of ..",
            json!([{"name": "dir/", "type": "dir"}, {"name": "dir/.wh..", "data": ""}]),
            "dir/.wh..",
        ),
        (
            "whiteout of ... ",
            json!([{"name": "dir/.wh...", "data": ""}]),
            "dir/.wh...",
        ),
        (
            "whiteout through a symlink",
            json!([{"name": "evil", "type": "symlink", "target": host_dir},
                   {"name": "evil/.wh.shadow", "data": ""}]),
            "evil/.wh.shadow",
        ),
        (
            "opaque through a symlink",
            json!([{"name": "evil", "type": "symlink", "target": host_dir},
                   {"name": "evil/.wh..wh..opq", "data": ""}]),
            "evil/.wh..wh..opq",
        ),
        (
            "device through a symlink",
            json!([{"name": "evil", "type": "symlink", "target": host_dir},
                   {"name": "evil/null", "type": "char", "major": 1, "minor": 3}]),
            "evil/null",
        ),
        (
            "symlink through a symlink",
            json!([{"name": "evil", "type": "symlink", "target": host_dir},
                   {"name": "evil/ln", "type": "symlink", "target": "/"}]),
            "evil/ln",
        ),
    ];
    let work_before = tree(f.dir.path());
    for (i, (what, entries, entry)) in cases.iter().enumerate() {
        let mut entries = entries.as_array().unwrap().clone();
        // A good entry before the bad one: a partial layer must vanish.
        entries.insert(0, json!({"name": "good", "data": "fine"}));
        let tar = python_tar(&Value::Array(entries));
        let image = put_image(
            &f.store,
            &format!("t/hostile:{i}"),
            &[(tar, Compression::Gzip)],
            None,
        );
        let err = unpack::unpacked_layers(&f.store, &image).expect_err(what);
        match &err {
            UnpackError::Entry {
                layer, entry: e, ..
            } => {
                assert_eq!(layer, &image.layers[0].digest, "{what}");
                assert_eq!(e, entry, "{what}: {err}");
            }
            other => panic!("{what}: not an entry error: {other}"),
        }
        let message = err.to_string();
        assert!(message.contains(entry), "{what}: {message}");
        assert!(
            message.contains(&image.layers[0].digest.to_string()),
            "{message}"
        );
        eprintln!("{what}: {message}");
        assert!(f.layer_dirs().is_empty(), "{what}: a layer dir was left");
        assert!(f.temp_dirs().is_empty(), "{what}: a temp dir was left");
    }
    // Nothing outside the store changed: the host dir holds only what it
    // held, nothing appeared at the absolute path or beside the store.
    assert_eq!(tree(host.path()), ["shadow"]);
    assert_eq!(
        std::fs::read_to_string(host.path().join("shadow")).unwrap(),
        "secret"
    );
    assert!(!Path::new(&abs).exists());
    let work_after: Vec<String> = tree(f.dir.path())
        .into_iter()
        .filter(|p| {
            !p.starts_with("images/blobs") && !p.starts_with("images/layers") && p != "images/lock"
        })
        .collect();
    let work_before: Vec<String> = work_before
        .into_iter()
        .filter(|p| {
            !p.starts_with("images/blobs") && !p.starts_with("images/layers") && p != "images/lock"
        })
        .collect();
    assert_eq!(work_after, work_before);
    assert!(!f.dir.path().join("escape").exists());
    assert!(!f.layers_root().join("escape").exists());
    assert!(!f.layers_root().join(".tmp/escape").exists());
}

/// A symlink from the same layer is data, never followed: a later entry of
/// the same name replaces the link itself.
#[test]
fn an_entry_replaces_a_symlink_of_its_name_without_following_it() {
    let _shared = COUNTING.read().unwrap();
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("target"), "keep").unwrap();
    let target = host.path().join("target");
    let tar = python_tar(&json!([
        {"name": "link", "type": "symlink", "target": target.to_str().unwrap()},
        {"name": "link", "data": "replaced"},
        {"name": "dirlink", "type": "symlink", "target": host.path().to_str().unwrap()},
        {"name": "dirlink/", "type": "dir"},
    ]));
    let image = put_image(&f.store, "t/replace:1", &[(tar, Compression::Plain)], None);
    let dirs = unpack::unpacked_layers(&f.store, &image).unwrap();
    assert_eq!(
        std::fs::read_to_string(dirs[0].join("link")).unwrap(),
        "replaced"
    );
    assert!(std::fs::symlink_metadata(dirs[0].join("dirlink"))
        .unwrap()
        .is_dir());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    assert_eq!(tree(host.path()), ["target"]);
}

#[test]
fn a_diff_id_mismatch_discards_the_layer() {
    let _shared = COUNTING.read().unwrap();
    let f = Fixture::new();
    let good = python_tar(&json!([{"name": "a", "data": "a"}]));
    let tar = python_tar(&json!([{"name": "b", "data": "b"}]));
    let wrong = Digest::of(b"not this layer");
    let image = put_image(
        &f.store,
        "t/mismatch:1",
        &[(good.clone(), Compression::Gzip), (tar, Compression::Zstd)],
        Some(vec![Digest::of(&good), wrong.clone()]),
    );
    let err = unpack::unpacked_layers(&f.store, &image).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, UnpackError::DiffId { layer, diff_id, .. }
            if layer == &image.layers[1].digest && diff_id == &wrong),
        "{message}"
    );
    assert!(message.contains(&wrong.to_string()), "{message}");
    // The good lower layer stays; the bad one left nothing.
    assert_eq!(f.layer_dirs(), [Digest::of(&good).hex().to_owned()]);
    assert!(f.temp_dirs().is_empty());
    // A corrupt stream (not a tar at all) is refused the same way.
    let image = put_image(
        &f.store,
        "t/garbage:1",
        &[(vec![0x55; 4096], Compression::Plain)],
        None,
    );
    let err = unpack::unpacked_layers(&f.store, &image).unwrap_err();
    assert!(
        matches!(err, UnpackError::Tar { .. } | UnpackError::Entry { .. }),
        "{err}"
    );
    assert!(f.temp_dirs().is_empty());
}

/// Three layers with whiteouts and an opaque dir: each layer holds the
/// overlayfs representation, and the mounted stack shows what Docker shows.
#[test]
fn whiteouts_and_opaque_dirs_across_three_layers() {
    let _shared = COUNTING.read().unwrap();
    let f = Fixture::new();
    let l1 = python_tar(&json!([
        {"name": "a/", "type": "dir"},
        {"name": "a/x", "data": "x1"},
        {"name": "a/y", "data": "y1"},
        {"name": "b/", "type": "dir"},
        {"name": "b/old", "data": "old"},
        {"name": "b/sub/", "type": "dir"},
        {"name": "b/sub/deep", "data": "deep"},
        {"name": "c", "data": "c1"},
        {"name": "d/", "type": "dir"},
        {"name": "d/keep", "data": "k"},
    ]));
    let l2 = python_tar(&json!([
        {"name": "a/", "type": "dir"},
        {"name": "a/.wh.x", "data": ""},
        {"name": "b/", "type": "dir"},
        {"name": "b/.wh..wh..opq", "data": ""},
        {"name": "b/new", "data": "new"},
        {"name": ".wh.c", "data": ""},
        {"name": ".wh.d", "data": ""},
    ]));
    let l3 = python_tar(&json!([
        {"name": "a/", "type": "dir"},
        {"name": "a/x", "data": "x3"},
        {"name": "d/", "type": "dir"},
        {"name": "d/fresh", "data": "f"},
    ]));
    let image = put_image(
        &f.store,
        "t/whiteouts:1",
        &[
            (l1, Compression::Gzip),
            (l2, Compression::Zstd),
            (l3, Compression::Plain),
        ],
        None,
    );
    let dirs = unpack::unpacked_layers(&f.store, &image).unwrap();
    assert_eq!(dirs.len(), 3);
    let l2 = &dirs[1];
    assert!(is_whiteout(&l2.join("a/x")));
    assert!(is_whiteout(&l2.join("c")));
    assert!(is_whiteout(&l2.join("d")));
    assert!(!l2.join(".wh.c").exists() && !l2.join("a/.wh.x").exists());
    assert_eq!(
        xattr(&l2.join("b"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!l2.join("b/.wh..wh..opq").exists());
    assert_eq!(xattr(&l2.join("a"), "trusted.overlay.opaque"), None);

    // Mounted as overlay lower dirs (top first), the view is Docker's.
    if !common::is_root() {
        common::skip(
            "whiteouts_and_opaque_dirs_across_three_layers (mount)",
            "needs root",
        );
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let lower = dirs
        .iter()
        .rev()
        .map(|d| d.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let options = format!("lowerdir={lower}");
    if let Err(e) = nix::mount::mount(
        Some("overlay"),
        mnt.path(),
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(options.as_str()),
    ) {
        common::skip_missing_kernel_feature(
            "whiteouts_and_opaque_dirs_across_three_layers (mount)",
            &format!("overlay mount: {e}"),
        );
        return;
    }
    let view = tree(mnt.path());
    let read = |p: &str| std::fs::read_to_string(mnt.path().join(p)).ok();
    let (x, y) = (read("a/x"), read("a/y"));
    nix::mount::umount(mnt.path()).unwrap();
    assert_eq!(
        view,
        ["a", "a/x", "a/y", "b", "b/new", "d", "d/fresh"],
        "overlay view"
    );
    assert_eq!((x.as_deref(), y.as_deref()), (Some("x3"), Some("y1")));
}

/// MESOS-6000: many layers. 120 layers, each unpacked into its own dir.
#[test]
fn one_hundred_twenty_layers_unpack() {
    let _shared = COUNTING.read().unwrap();
    let f = Fixture::new();
    let layers: Vec<(Vec<u8>, Compression)> = (0..120)
        .map(|i| {
            (
                small_tar(&format!("layer/{i:03}"), i.to_string().as_bytes()),
                Compression::Gzip,
            )
        })
        .collect();
    let image = put_image(&f.store, "t/many:120", &layers, None);
    let started = std::time::Instant::now();
    let dirs = unpack::unpacked_layers(&f.store, &image).unwrap();
    eprintln!("120 layers unpacked in {:?}", started.elapsed());
    assert_eq!(dirs.len(), 120);
    for (i, dir) in dirs.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("layer/{i:03}"))).unwrap(),
            i.to_string()
        );
    }
    assert_eq!(f.layer_dirs().len(), 120);
    // Unpacked again: the same dirs, nothing extracted.
    assert_eq!(unpack::unpacked_layers(&f.store, &image).unwrap(), dirs);
}

/// Threads unpacking the same image at once extract each layer once.
#[test]
fn concurrent_unpacks_extract_each_layer_once() {
    let _alone = COUNTING.write().unwrap();
    let f = Fixture::new();
    let layers: Vec<(Vec<u8>, Compression)> = (0..6)
        .map(|i| {
            // Big enough that the threads overlap.
            let data = format!("{i}").repeat(512 << 10);
            (
                python_tar(&json!([{"name": format!("f{i}"), "data": data}])),
                Compression::Gzip,
            )
        })
        .collect();
    let image = put_image(&f.store, "t/concurrent:1", &layers, None);
    let before = unpack::extractions();
    let barrier = std::sync::Barrier::new(4);
    let results: Vec<Vec<PathBuf>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    unpack::unpacked_layers(&f.store, &image).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(unpack::extractions() - before, 6);
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(f.layer_dirs().len(), 6);
    assert!(f.temp_dirs().is_empty());
}

#[test]
fn prune_removes_layers_no_image_uses() {
    let _shared = COUNTING.read().unwrap();
    let f = Fixture::new();
    let base = python_tar(&json!([{"name": "base", "data": "b".repeat(100_000)}]));
    let a = python_tar(&json!([{"name": "a", "data": "a".repeat(100_000)}]));
    let b = python_tar(&json!([{"name": "b", "data": "b".repeat(100_000)}]));
    let image_a = put_image(
        &f.store,
        "t/a:1",
        &[(base.clone(), Compression::Gzip), (a, Compression::Gzip)],
        None,
    );
    let image_b = put_image(
        &f.store,
        "t/b:1",
        &[(base, Compression::Gzip), (b, Compression::Gzip)],
        None,
    );
    let dirs_a = unpack::unpacked_layers(&f.store, &image_a).unwrap();
    let dirs_b = unpack::unpacked_layers(&f.store, &image_b).unwrap();
    assert_eq!(dirs_a[0], dirs_b[0]);
    assert_eq!(unpack::prune_layers(&f.store).unwrap(), 0);
    // A temp dir left by a killed extraction goes.
    let stale = f
        .layers_root()
        .join(".tmp")
        .join(format!("{}.999999.0", Digest::of(b"stale").hex()));
    std::fs::create_dir_all(stale.join("sub")).unwrap();
    std::fs::write(stale.join("sub/f"), "x").unwrap();

    f.store.remove(&Reference::parse("t/a:1").unwrap()).unwrap();
    // While someone holds the layer (an unpack in progress), it stays.
    let chain_a = unpack::chain_ids(&image_a.layers);
    let lock = std::fs::File::open(f.layers_root().join(".locks").join(chain_a[1].hex())).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockShared).unwrap();
    unpack::prune_layers(&f.store).unwrap();
    assert!(dirs_a[1].is_dir());
    assert!(!stale.exists());
    drop(held);
    let freed = unpack::prune_layers(&f.store).unwrap();
    assert!(freed >= 100_000, "freed {freed}");
    assert!(!dirs_a[1].exists());
    assert!(dirs_a[0].is_dir() && dirs_b[1].is_dir());
    assert_eq!(unpack::prune_layers(&f.store).unwrap(), 0);
}

/// The error of a refused entry says which layer and which entry, and why.
#[test]
fn refusals_say_why() {
    let _shared = COUNTING.read().unwrap();
    let f = Fixture::new();
    let tar = python_tar(&json!([{"name": "../escape", "data": "x"}]));
    let image = put_image(&f.store, "t/why:1", &[(tar, Compression::Gzip)], None);
    let err = unpack::unpacked_layers(&f.store, &image).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Entry {
                source: EntryError::ParentDir,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "layer {}: entry \"../escape\": `..` component (would leave the layer); layer discarded",
            image.layers[0].digest
        )
    );
}

/// Extraction throughput of one big layer, for benches/image_unpack.sh:
/// `BERTH_BENCH_LAYER=<tar> BERTH_BENCH_BLOB=<tar.gz>` (the same tar,
/// gzipped); prints MB/s of uncompressed tar.
#[test]
#[ignore = "benchmark, run by benches/image_unpack.sh"]
fn bench_unpack_throughput() {
    let (Ok(tar), Ok(blob)) = (
        std::env::var("BERTH_BENCH_LAYER"),
        std::env::var("BERTH_BENCH_BLOB"),
    ) else {
        eprintln!("set BERTH_BENCH_LAYER and BERTH_BENCH_BLOB");
        return;
    };
    let work = tempfile::tempdir_in(std::env::var("BERTH_BENCH_DIR").unwrap_or("/var/tmp".into()))
        .unwrap();
    let store = ImageStore::open(work.path()).unwrap();
    let diff_id = berth::images::pull::diff_id_of(Path::new(&tar), Compression::Plain).unwrap();
    let tar_size = std::fs::metadata(&tar).unwrap().len();
    let gz = std::fs::read(&blob).unwrap();
    let digest = store.put_document(&gz).unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}
    }))
    .unwrap();
    let config_digest = store.put_document(&config).unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest.to_string(), "size": gz.len()}],
    }))
    .unwrap();
    let manifest_digest = store.put_document(&manifest).unwrap();
    let image = store
        .tag(
            &Reference::parse("bench/layer:1").unwrap(),
            &Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: manifest_digest,
                size: manifest.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
            },
        )
        .unwrap();
    let started = std::time::Instant::now();
    unpack::unpacked_layers(&store, &image).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "berth unpack: {:.1} MiB tar in {seconds:.2}s = {:.1} MB/s",
        tar_size as f64 / (1 << 20) as f64,
        tar_size as f64 / 1e6 / seconds
    );
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An image as real tools make it (umoci from busybox-static, whiteouts
/// from a deleted file), plus hostile layers added on top of it with
/// `umoci raw add-layer`, loaded with `berth load`'s OCI layout reader.
#[test]
fn umoci_images_unpack_and_hostile_added_layers_are_refused() {
    let _shared = COUNTING.read().unwrap();
    if let Some(tool) = ["umoci", "python3"]
        .into_iter()
        .find(|t| Command::new(t).arg("--version").output().is_err())
        .or_else(|| (!Path::new("/bin/busybox").is_file()).then_some("busybox-static"))
    {
        common::skip(
            "umoci_images_unpack_and_hostile_added_layers_are_refused",
            &format!("{tool} is not installed"),
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let image = format!("{}:busy", layout.display());
    let bundle = work.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    for dir in ["bin", "d", "etc"] {
        std::fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::fs::write(rootfs.join("etc/gone"), "x").unwrap();
    std::fs::write(rootfs.join("d/old"), "o").unwrap();
    let repack = || {
        run(Command::new("umoci")
            .args(["repack", "--refresh-bundle", "--image", &image])
            .arg(&bundle))
    };
    repack();
    std::fs::remove_file(rootfs.join("etc/gone")).unwrap();
    std::fs::remove_file(rootfs.join("d/old")).unwrap();
    std::fs::write(rootfs.join("d/new"), "n").unwrap();
    repack();
    let host = tempfile::tempdir().unwrap();
    let host_dir = host.path().to_str().unwrap();
    let hostile = [
        json!([{"name": "../escape", "data": "x"}]),
        json!([{"name": "/abs-escape", "data": "x"}]),
        json!([{"name": "evil", "type": "symlink", "target": host_dir},
               {"name": "evil/file", "data": "x"}]),
        json!([{"name": "shadow", "type": "link", "target": "../../etc/shadow"}]),
        json!([{"name": ".wh.../x", "data": "x"}]),
        json!([{"name": "bin/.wh...", "data": ""}]),
    ];
    for (i, entries) in hostile.iter().enumerate() {
        let tar = work.path().join(format!("hostile-{i}.tar"));
        std::fs::write(&tar, python_tar(entries)).unwrap();
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image, "--tag"])
            .arg(format!("hostile-{i}"))
            .arg(&tar));
    }

    let f = Fixture::new();
    let loaded = berth::images::load::load_oci_layout(&f.store, &layout, None).unwrap();
    assert_eq!(loaded.len(), 1 + hostile.len());
    let busy = loaded
        .iter()
        .find(|i| i.reference == "docker.io/library/busy:latest")
        .unwrap();
    let dirs = unpack::unpacked_layers(&f.store, busy).unwrap();
    // umoci new makes no layer: the first repack is the lowest.
    assert_eq!(dirs.len(), 2);
    let busybox = std::fs::metadata(dirs[0].join("bin/busybox")).unwrap();
    assert_eq!(
        busybox.len(),
        std::fs::metadata("/bin/busybox").unwrap().len()
    );
    assert_eq!(
        std::fs::read_link(dirs[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(is_whiteout(&dirs[1].join("etc/gone")));
    assert!(is_whiteout(&dirs[1].join("d/old")));
    assert_eq!(std::fs::read_to_string(dirs[1].join("d/new")).unwrap(), "n");
    let good_layers = f.layer_dirs();
    assert_eq!(good_layers.len(), 2);

    for image in loaded.iter().filter(|i| i.reference.contains("hostile")) {
        let err = unpack::unpacked_layers(&f.store, image).unwrap_err();
        assert!(
            matches!(&err, UnpackError::Entry { layer, .. } if layer == &image.layers[2].digest),
            "{}: {err}",
            image.reference
        );
        // The shared lower layers stay; nothing of the hostile one.
        assert_eq!(f.layer_dirs(), good_layers, "{}", image.reference);
        assert!(f.temp_dirs().is_empty());
    }
    assert!(tree(host.path()).is_empty());
    assert!(!Path::new("/abs-escape").exists());
    assert!(!f.layers_root().join("escape").exists());
    assert!(!f.layers_root().join(".tmp/escape").exists());
}
