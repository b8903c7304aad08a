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

#[path = "common/registry.rs"]
mod registry;

use berth::images::pull::{pull, Credentials, PullError, PullOptions};
use registry::Registry;

fn options(reg: &Registry) -> PullOptions {
    PullOptions {
        insecure_registries: vec![reg.addr.clone()],
        credentials: [(
            reg.addr.clone(),
            Credentials {
                username: registry::USER.into(),
                password: registry::PASSWORD.into(),
            },
        )]
        .into(),
        ..Default::default()
    }
}

fn registry_or_skip(test: &str) -> Option<Registry> {
    if let Some(tool) = registry::missing_tool() {
        berth_cgroups::testing::skip(test, &format!("{tool} is not installed"));
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "{test}: {tool} missing under CI"
        );
        return None;
    }
    Some(Registry::start())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn pull_by_tag_and_digest_in_oci_and_docker_forms_with_basic_auth() {
    let Some(reg) = registry_or_skip("pull_by_tag_and_digest") else {
        return;
    };
    let source = reg.build_image("a", 3);
    let oci_digest = reg.push(&source, "t/busy:oci", &[]);
    let v2s2_digest = reg.push(&source, "t/busy:v2s2", &["--format", "v2s2"]);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let opts = options(&reg);

    let r = Reference::parse(&format!("{}/t/busy:oci", reg.addr)).unwrap();
    let mut events = Vec::new();
    let image = block_on(pull(&store, &r, &opts, &mut |p| events.push(p))).unwrap();
    assert_eq!(image.manifest_digest.to_string(), oci_digest);
    assert_eq!(image.layers.len(), 3);
    assert_eq!(
        image.config.entrypoint,
        Some(vec!["/bin/busybox".to_string()])
    );
    for l in &image.layers {
        assert!(store.has_blob(&l.digest));
    }
    assert_eq!(
        store.resolve(&r).unwrap().unwrap().manifest_digest,
        image.manifest_digest
    );

    // Docker v2s2 of the same content: the layers are already there.
    let r2 = Reference::parse(&format!("{}/t/busy:v2s2", reg.addr)).unwrap();
    let gets_before = reg.log().matches("GET /v2/t/busy/blobs/").count();
    let image2 = block_on(pull(&store, &r2, &opts, &mut |_| {})).unwrap();
    assert_eq!(image2.manifest_digest.to_string(), v2s2_digest);
    let layer_gets = reg.log().matches("GET /v2/t/busy/blobs/").count() - gets_before;
    assert!(
        layer_gets <= 1,
        "only the v2s2 config may be fetched, saw {layer_gets} blob GETs"
    );

    // By digest.
    let r3 = Reference::parse(&format!("{}/t/busy@{oci_digest}", reg.addr)).unwrap();
    let image3 = block_on(pull(&store, &r3, &opts, &mut |_| {})).unwrap();
    assert_eq!(image3.manifest_digest.to_string(), oci_digest);
    assert_eq!(store.list().unwrap().len(), 3);

    // Wrong password: refused, naming the registry.
    let mut bad = opts.clone();
    bad.credentials.get_mut(&reg.addr).unwrap().password = "wrong".into();
    let err = block_on(pull(&store, &r, &bad, &mut |_| {})).unwrap_err();
    assert!(err.to_string().contains(&reg.addr), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");
}

#[test]
fn index_picks_linux_amd64() {
    let Some(reg) = registry_or_skip("index_picks_linux_amd64") else {
        return;
    };
    let amd = reg.build_image("amd", 1);
    let arm = reg.build_image("arm", 1);
    let amd_digest = reg.push(&amd, "t/multi:amd64", &[]);
    let arm_digest = reg.push(&arm, "t/multi:arm64", &[]);
    // The index by hand, pushed through skopeo from an OCI layout.
    let layout = reg.dir.path().join("oci-amd");
    // Copy the arm image's blobs into the amd layout so the index is complete.
    for e in std::fs::read_dir(reg.dir.path().join("oci-arm/blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let _ = std::fs::copy(e.path(), layout.join("blobs/sha256").join(e.file_name()));
    }
    let size = |d: &str| {
        std::fs::metadata(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
        .len()
    };
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm_digest, "size": size(&arm_digest),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": OCI_MANIFEST, "digest": amd_digest, "size": size(&amd_digest),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    });
    let index = serde_json::to_vec(&index).unwrap();
    let index_digest = Digest::of(&index);
    std::fs::write(layout.join("blobs/sha256").join(index_digest.hex()), &index).unwrap();
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest.to_string(),
         "size": index.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    reg.push(
        &format!("oci:{}:multi", layout.display()),
        "t/multi:latest",
        &["--all"],
    );

    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let r = Reference::parse(&format!("{}/t/multi", reg.addr)).unwrap();
    let mut opts = options(&reg);
    opts.platform = Some(berth::images::Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    });
    let image = block_on(pull(&store, &r, &opts, &mut |_| {})).unwrap();
    assert_eq!(image.manifest_digest.to_string(), amd_digest);
    // Not in the index: an error naming the platform.
    opts.platform = Some(berth::images::Platform {
        os: "linux".into(),
        architecture: "s390x".into(),
        variant: None,
    });
    let err = block_on(pull(&store, &r, &opts, &mut |_| {})).unwrap_err();
    assert!(matches!(err, PullError::NoPlatform { .. }), "{err}");
}

#[test]
fn corrupted_blob_on_the_registry_is_refused_and_leaves_nothing() {
    let Some(reg) = registry_or_skip("corrupted_blob_refused") else {
        return;
    };
    let source = reg.build_image("c", 2);
    reg.push(&source, "t/bad:v1", &[]);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let r = Reference::parse(&format!("{}/t/bad:v1", reg.addr)).unwrap();
    // Find the layers from a first resolve of the manifest via the layout.
    let layout_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.dir.path().join("oci-c/index.json")).unwrap())
            .unwrap();
    let m = layout_index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(reg.dir.path().join("oci-c/blobs/sha256").join(&m)).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let file = reg.blob_file(&layer);
    let mut data = std::fs::read(&file).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&file, data).unwrap();

    let err = block_on(pull(&store, &r, &options(&reg), &mut |_| {})).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&layer) && text.contains(&reg.addr), "{text}");
    let bad = Digest::from_hex(&layer).unwrap();
    assert!(!store.has_blob(&bad));
    assert_eq!(
        std::fs::read_dir(dir.path().join("images/ingest"))
            .unwrap()
            .count(),
        0
    );
    assert!(store.resolve(&r).unwrap().is_none());
}

#[test]
fn plain_http_is_never_spoken_unless_the_registry_is_insecure() {
    let Some(reg) = registry_or_skip("plain_http_is_never_spoken") else {
        return;
    };
    let source = reg.build_image("p", 1);
    reg.push(&source, "t/plain:v1", &[]);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let r = Reference::parse(&format!("{}/t/plain:v1", reg.addr)).unwrap();
    let mut opts = options(&reg);
    opts.insecure_registries.clear();
    // Not named insecure: TLS is tried, the plain-HTTP registry fails the
    // handshake, and no HTTP request (nor the credentials) reached it.
    let before = reg.log().len();
    let err = block_on(pull(&store, &r, &opts, &mut |_| {})).unwrap_err();
    assert!(matches!(err, PullError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&reg.addr), "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
    let after = reg.log();
    assert!(!after[before..].contains("GET /v2"), "{}", &after[before..]);
    // Named insecure: works.
    block_on(pull(&store, &r, &options(&reg), &mut |_| {})).unwrap();
}

#[test]
fn concurrent_pulls_share_one_download_and_policies_apply() {
    use berth::images::{Images, PullPolicy};
    let Some(reg) = registry_or_skip("concurrent_pulls_share_one_download") else {
        return;
    };
    let source = reg.build_image("s", 3);
    reg.push(&source, "t/shared:v1", &[]);
    let dir = tempfile::tempdir().unwrap();
    let images = Images::new(ImageStore::open(dir.path()).unwrap(), options(&reg));
    let r = Reference::parse(&format!("{}/t/shared:v1", reg.addr)).unwrap();
    let err = block_on(images.ensure_image(&r, PullPolicy::Never)).unwrap_err();
    assert!(err.to_string().contains("t/shared:v1"), "{err}");
    let before = reg.log().matches("GET /v2/t/shared/blobs/").count();
    let (a, b) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::join!(
                images.ensure_image(&r, PullPolicy::Missing),
                images.ensure_image(&r, PullPolicy::Always)
            )
        });
    assert_eq!(a.unwrap().manifest_digest, b.unwrap().manifest_digest);
    let gets = reg.log().matches("GET /v2/t/shared/blobs/").count() - before;
    // 3 layers + 1 config, each fetched once (the access log also has the
    // 401 challenges, so count the answered ones).
    let ok_gets = reg
        .log()
        .lines()
        .filter(|l| l.contains("GET /v2/t/shared/blobs/") && l.contains("\" 200 "))
        .count();
    assert_eq!(ok_gets, 4, "blob GETs: {gets}\n{}", reg.log());
    assert!(block_on(images.ensure_image(&r, PullPolicy::Never)).is_ok());
}

#[test]
fn load_of_an_oci_layout_verifies_and_names_images() {
    let Some(reg) = registry_or_skip("load_of_an_oci_layout") else {
        return;
    };
    reg.build_image("l", 2);
    let layout = reg.dir.path().join("oci-l");
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let loaded = berth::images::load::load_oci_layout(&store, &layout, None).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].reference, "docker.io/library/busy:latest");
    assert_eq!(loaded[0].layers.len(), 2);
    assert!(store
        .resolve(&Reference::parse("busy").unwrap())
        .unwrap()
        .is_some());

    // A tampered layer blob in the layout: refused, nothing stored.
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = ImageStore::open(dir2.path()).unwrap();
    let layer = &loaded[0].layers[1].digest;
    let path = layout.join("blobs/sha256").join(layer.hex());
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, data).unwrap();
    let err = berth::images::load::load_oci_layout(&store2, &layout, None).unwrap_err();
    assert!(err.to_string().contains(&layer.to_string()), "{err}");
    assert!(!store2.has_blob(layer));
    assert!(store2.list().unwrap().is_empty());
}

#[test]
fn gc_frees_unused_images_and_keeps_used_ones() {
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let (used, used_layer) = put_image(&store, &[1u8; 4096]);
    let (unused, unused_layer) = put_image(&store, &[2u8; 4096]);
    store
        .tag(&Reference::parse("used:v1").unwrap(), &used)
        .unwrap();
    store
        .tag(&Reference::parse("unused:v1").unwrap(), &unused)
        .unwrap();
    // An orphan blob (as from an abandoned pull) goes too; a pinned one stays.
    let orphan = store.put_document(b"orphan").unwrap();
    let pinned = store.put_document(b"pinned by a pull").unwrap();
    let report = store
        .gc(
            0,
            &BTreeSet::from([used.digest.clone()]),
            &BTreeSet::from([pinned.clone()]),
        )
        .unwrap();
    assert_eq!(
        report.removed,
        vec!["docker.io/library/unused:v1".to_string()]
    );
    assert!(report.freed > 0);
    assert!(!store.has_blob(&orphan) && !store.has_blob(&unused_layer));
    assert!(store.has_blob(&pinned) && store.has_blob(&used_layer));
    assert!(store
        .resolve(&Reference::parse("used:v1").unwrap())
        .unwrap()
        .is_some());
    // Under the limit: nothing removed.
    let report = store
        .gc(u64::MAX, &BTreeSet::new(), &BTreeSet::new())
        .unwrap();
    assert!(report.removed.is_empty());
}

/// A CA and a server certificate for 127.0.0.1 made with rcgen; returns
/// (ca.pem, cert.pem, key.pem) paths in `dir`.
fn make_tls(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn tls_registry_needs_its_ca_and_mirrors_and_docker_config_work() {
    if registry::missing_tool().is_some() {
        registry_or_skip("tls_registry_needs_its_ca");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_tls(certs.path());
    let reg = Registry::start_with_tls(Some((&cert, &key)));
    let source = reg.build_image("tls", 2);
    let digest = reg.push(&source, "t/tls:v1", &[]);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let r = Reference::parse(&format!("{}/t/tls:v1", reg.addr)).unwrap();
    let creds = options(&reg).credentials;

    // Without the CA: refused, naming the registry and the certificate.
    let opts = PullOptions {
        credentials: creds.clone(),
        ..Default::default()
    };
    let err = block_on(pull(&store, &r, &opts, &mut |_| {})).unwrap_err();
    let text = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(text.contains(&reg.addr), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(store.resolve(&r).unwrap().is_none());

    // With the CA configured for that registry: pulled, verified.
    let with_ca = PullOptions {
        credentials: creds.clone(),
        ca_certs: [(reg.addr.clone(), vec![ca.clone()])].into(),
        ..Default::default()
    };
    let image = block_on(pull(&store, &r, &with_ca, &mut |_| {})).unwrap();
    assert_eq!(image.manifest_digest.to_string(), digest);

    // Credentials from a docker config.json only (auth = base64 user:pass).
    use base64::Engine as _;
    let config = certs.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        registry::USER,
        registry::PASSWORD
    ));
    std::fs::write(
        &config,
        serde_json::json!({"auths": {reg.addr.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = ImageStore::open(dir2.path()).unwrap();
    let docker_only = PullOptions {
        ca_certs: with_ca.ca_certs.clone(),
        docker_config: Some(config.clone()),
        ..Default::default()
    };
    block_on(pull(&store2, &r, &docker_only, &mut |_| {})).unwrap();

    // A mirror of an unreachable registry, and a default registry: a name
    // without registry goes to the default, which is pulled via its mirror.
    let dir3 = tempfile::tempdir().unwrap();
    let store3 = ImageStore::open(dir3.path()).unwrap();
    let mirrored = PullOptions {
        ca_certs: with_ca.ca_certs.clone(),
        docker_config: Some(config),
        default_registry: Some("127.0.0.1:1".into()),
        mirrors: [("127.0.0.1:1".to_string(), vec![reg.addr.clone()])].into(),
        ..Default::default()
    };
    let short = mirrored.parse_reference("t/tls:v1").unwrap();
    assert_eq!(short.to_string(), "127.0.0.1:1/t/tls:v1");
    let image = block_on(pull(&store3, &short, &mirrored, &mut |_| {})).unwrap();
    assert_eq!(image.manifest_digest.to_string(), digest);
    assert!(!format!("{mirrored:?}").contains(registry::PASSWORD));
}

#[test]
fn removing_an_image_keeps_blobs_another_image_shares() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let (desc, layer) = put_image(&store, b"shared layer");
    let a = Reference::parse("127.0.0.1:5000/t/a:v1").unwrap();
    let b = Reference::parse("127.0.0.1:5000/t/b:v1").unwrap();
    store.tag(&a, &desc).unwrap();
    store.tag(&b, &desc).unwrap();
    store.remove(&a).unwrap();
    assert!(store.blob_path(&layer).is_file());
    assert!(store.resolve(&b).unwrap().is_some());
    store.remove(&b).unwrap();
    assert!(!store.blob_path(&layer).exists());
    // A blob a pull in flight pinned survives a removal's sweep.
    let (desc, layer) = put_image(&store, b"pinned layer");
    store.tag(&a, &desc).unwrap();
    let mut pins = berth::images::pull::Pins::default();
    pins.pin(&layer);
    store.remove(&a).unwrap();
    assert!(store.blob_path(&layer).is_file());
    drop(pins);
}

fn skopeo(args: &[&str]) {
    let out = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn load_of_oci_archive_and_docker_archive_verifies_every_blob() {
    use berth::images::archive::load_path;
    let Some(reg) = registry_or_skip("load_of_archives") else {
        return;
    };
    let source = reg.build_image("ld", 2);
    let layout = source.trim_start_matches("oci:").trim_end_matches(":busy");
    let work = tempfile::tempdir().unwrap();

    // docker save format, built offline by skopeo.
    let docker_tar = work.path().join("docker.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &source,
        &format!("docker-archive:{}:t/docker:v1", docker_tar.display()),
    ]);
    // The OCI layout as a tar.
    let oci_tar = work.path().join("oci.tar");
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(layout)
        .arg("-cf")
        .arg(&oci_tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());

    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let loaded = load_path(&store, &docker_tar, None).unwrap();
    assert_eq!(loaded[0].reference, "docker.io/t/docker:v1");
    assert_eq!(loaded[0].layers.len(), 2);
    assert_eq!(
        loaded[0].config.entrypoint,
        Some(vec!["/bin/busybox".to_string()])
    );
    let loaded = load_path(&store, &oci_tar, None).unwrap();
    assert_eq!(loaded[0].reference, "docker.io/library/busy:latest");
    for layer in &loaded[0].layers {
        let data = std::fs::read(store.blob_path(&layer.digest)).unwrap();
        assert_eq!(Digest::of(&data), layer.digest);
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("images/ingest"))
            .unwrap()
            .count(),
        0
    );

    // A docker archive whose layer was altered: refused, naming the layer.
    let mut tampered = tar::Builder::new(Vec::new());
    let mut original = tar::Archive::new(std::fs::File::open(&docker_tar).unwrap());
    let mut flipped = false;
    for entry in original.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let name = entry.path().unwrap().into_owned();
        if !flipped && header.entry_type().is_file() && data.len() > 10_000 {
            let n = data.len();
            data[n - 600] ^= 1;
            flipped = true;
        }
        header.set_cksum();
        tampered.append_data(&mut header, name, &data[..]).unwrap();
    }
    assert!(flipped);
    let tampered_path = work.path().join("tampered.tar");
    std::fs::write(&tampered_path, tampered.into_inner().unwrap()).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = ImageStore::open(dir2.path()).unwrap();
    let err = load_path(&store2, &tampered_path, None).unwrap_err();
    assert!(err.to_string().contains("sha256:"), "{err}");
    assert!(store2.list().unwrap().is_empty());
}

#[test]
fn hostile_archive_members_never_write_outside_the_store() {
    use berth::images::archive::load_path;
    let work = tempfile::tempdir().unwrap();
    let victim_dir = work.path().join("victim");
    std::fs::create_dir(&victim_dir).unwrap();
    let build = |name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]| {
        let mut builder = tar::Builder::new(Vec::new());
        let mut index_header = tar::Header::new_gnu();
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        index_header.set_size(index.len() as u64);
        index_header.set_mode(0o644);
        index_header.set_cksum();
        builder
            .append_data(&mut index_header, "index.json", &index[..])
            .unwrap();
        let mut header = tar::Header::new_old();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        // Names set raw: the tar crate's setters refuse `..` themselves.
        let bytes = name.as_bytes();
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        if let Some(link) = link {
            let l = link.as_bytes();
            header.as_old_mut().linkname[..l.len()].copy_from_slice(l);
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
        builder.into_inner().unwrap()
    };
    let cases = [
        (
            "escape",
            build("../victim/x", tar::EntryType::Regular, None, b"pwned"),
        ),
        (
            "absolute",
            build("/tmp/berth-abs-x", tar::EntryType::Regular, None, b"pwned"),
        ),
        (
            "symlink out",
            build(
                "blobs/sha256/ln",
                tar::EntryType::Symlink,
                Some("../../../etc/shadow"),
                b"",
            ),
        ),
        (
            "hard link out",
            build(
                "blobs/sha256/hl",
                tar::EntryType::Link,
                Some("../etc/shadow"),
                b"",
            ),
        ),
        ("device", build("dev", tar::EntryType::Char, None, b"")),
    ];
    for (what, archive) in cases {
        let path = work.path().join("hostile.tar");
        std::fs::write(&path, archive).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let err = load_path(&store, &path, None).expect_err(what);
        assert!(err.to_string().contains("archive member"), "{what}: {err}");
        assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 0, "{what}");
        assert!(!std::path::Path::new("/tmp/berth-abs-x").exists(), "{what}");
        let ingest = std::fs::read_dir(dir.path().join("images/ingest"))
            .unwrap()
            .count();
        assert_eq!(ingest, 0, "{what}: temp files left");
    }
}
