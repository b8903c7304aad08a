//! The image store: an OCI layout under the work dir, blobs verified while
//! they stream in, images named by normalized references.

use std::io::Write;

use berth::images::manifest::{Descriptor, OCI_CONFIG, OCI_MANIFEST};
use berth::images::{Compression, Digest, ImageStore, ImageStoreError, Reference};

/// A one-layer gzip image put into the store; returns the manifest descriptor.
fn put_image(store: &ImageStore, file_content: &[u8]) -> (Descriptor, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(file_content.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, "bin/hello", file_content)
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let layer_digest = store.put_document(&layer).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/hello"], "Env": ["A=1"], "WorkingDir": "/w",
                   "User": "nobody", "ExposedPorts": {"80/tcp": {}}, "Labels": {"k": "v"}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = store.put_document(&config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest.to_string(), "size": layer.len()}]
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let digest = store.put_document(&manifest).unwrap();
    let desc = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest,
        size: manifest.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    (desc, layer_digest)
}

#[test]
fn store_is_an_oci_layout_and_resolves_references() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let (desc, layer) = put_image(&store, b"#!/bin/sh\necho hi\n");
    let reference = Reference::parse("127.0.0.1:5000/t/busy:v1").unwrap();
    let image = store.tag(&reference, &desc).unwrap();
    assert_eq!(image.reference, "127.0.0.1:5000/t/busy:v1");
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.layers[0].digest, layer);
    assert_eq!(image.layers[0].media_type, Compression::Gzip);
    assert_eq!(
        image.config.entrypoint,
        Some(vec!["/bin/hello".to_string()])
    );
    assert_eq!(image.config.user.as_deref(), Some("nobody"));
    assert!(store.blob_path(&layer).is_file());

    // The layout files any OCI tool reads.
    let root = dir.path().join("images");
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "127.0.0.1:5000/t/busy:v1"
    );

    // By digest.
    let by_digest = Reference::parse(&format!("127.0.0.1:5000/t/busy@{}", desc.digest)).unwrap();
    let found = store.resolve(&by_digest).unwrap().unwrap();
    assert_eq!(found.manifest_digest, desc.digest);
    assert!(store
        .resolve(&Reference::parse("127.0.0.1:5000/t/busy:v2").unwrap())
        .unwrap()
        .is_none());

    // Reopened (an agent restart), the image is still there.
    let store = ImageStore::open(dir.path()).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);

    // Removal frees its blobs.
    store.remove(&reference).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(!store.blob_path(&layer).exists());
    assert!(matches!(
        store.remove(&reference),
        Err(ImageStoreError::NotFound(_))
    ));
}

#[test]
fn mismatching_blob_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let claimed = Digest::of(b"the real content");
    let err = store
        .put_blob(&claimed, Some(16), &mut &b"evil content...."[..])
        .unwrap_err();
    assert!(err.to_string().contains(&claimed.to_string()), "{err}");
    assert!(matches!(err, ImageStoreError::Mismatch { .. }));
    // Longer than declared: refused as soon as it passes the size.
    let err = store
        .put_blob(&claimed, Some(4), &mut &b"the real content"[..])
        .unwrap_err();
    assert!(matches!(err, ImageStoreError::TooLarge { .. }), "{err}");
    assert!(!store.blob_path(&claimed).exists());
    let ingest = dir.path().join("images/ingest");
    assert_eq!(std::fs::read_dir(&ingest).unwrap().count(), 0);
    // The right content goes in.
    store
        .put_blob(&claimed, Some(16), &mut &b"the real content"[..])
        .unwrap();
    assert!(store.has_blob(&claimed));
}

#[test]
fn temp_files_of_a_killed_writer_are_discarded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let digest = Digest::of(b"partial");
    let mut writer = store.blob_writer(&digest, Some(7)).unwrap();
    writer.write_chunk(b"par").unwrap();
    std::mem::forget(writer); // as if killed: no Drop, temp file stays
    assert_eq!(
        std::fs::read_dir(dir.path().join("images/ingest"))
            .unwrap()
            .count(),
        1
    );
    let store = ImageStore::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("images/ingest"))
            .unwrap()
            .count(),
        0
    );
    assert!(!store.has_blob(&digest));
}
