//! A real registry on loopback for image tests: Debian's `docker-registry`
//! (distribution 2.8) with its own config file, htpasswd auth and storage
//! in a temp dir, on a free port; images built offline with umoci from
//! busybox-static and pushed with skopeo.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "berth";
pub const PASSWORD: &str = "s3cret-pw";

pub struct Registry {
    pub dir: tempfile::TempDir,
    pub addr: String,
    child: Child,
}

/// The tools these tests need, or the first one missing.
pub fn missing_tool() -> Option<&'static str> {
    ["docker-registry", "skopeo", "umoci", "htpasswd"]
        .into_iter()
        .find(|tool| {
            !std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                .unwrap_or(false)
        })
        .or_else(|| (!Path::new("/bin/busybox").is_file()).then_some("busybox-static"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Registry {
    /// Starts a registry with htpasswd auth; waits until it answers.
    pub fn start() -> Self {
        Self::start_with_tls(None)
    }

    /// Starts a registry serving TLS with the PEM certificate and key at
    /// `tls` (cert, key) when given.
    pub fn start_with_tls(tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let htpasswd = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
        std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
        let tls = match tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls}auth:\n  htpasswd:\n    realm: berth-test\n    path: {pw}\n",
            data = dir.path().join("data").display(),
            pw = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { dir, addr, child }
    }

    /// The registry's log (access log included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry's storage of blob `hex` (to corrupt it).
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Builds a busybox image in an OCI layout (`layers` layers, the last
    /// holding busybox, the others a small file each) and returns
    /// `oci:<dir>:busy`.
    pub fn build_image(&self, name: &str, layers: usize) -> String {
        let (image, _) = self.build_layers(name, "busy", layers, |rootfs, i| {
            if i + 1 == layers {
                std::fs::create_dir_all(rootfs.join("bin")).unwrap();
                std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
            } else {
                std::fs::write(rootfs.join(format!("layer-{i}")), format!("{name} {i}")).unwrap();
            }
        });
        run(Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--config.entrypoint",
            "/bin/busybox",
            "--config.cmd",
            "true",
            "--config.env",
            "IMG=1",
        ]));
        format!("oci:{image}")
    }

    /// Builds an image of `layers` layers of `bytes` random bytes each
    /// (incompressible, so the blobs are that large) and returns
    /// `oci:<dir>:big`.
    #[allow(dead_code)] // used by some of the test binaries that include this file
    pub fn build_big_image(&self, name: &str, layers: usize, bytes: usize) -> String {
        use std::io::Read;
        let mut random = std::fs::File::open("/dev/urandom").unwrap();
        let (image, bundle) = self.build_layers(name, "big", layers, |rootfs, i| {
            let mut data = vec![0u8; bytes];
            random.read_exact(&mut data).unwrap();
            std::fs::write(rootfs.join(format!("data-{i}")), &data).unwrap();
        });
        let _ = std::fs::remove_dir_all(&bundle);
        format!("oci:{image}")
    }

    /// A new image `<layout of name>:tag` of `layers` layers, each what
    /// `fill(rootfs, i)` adds to the unpacked bundle before a repack.
    /// Returns the image (`DIR:tag`) and the bundle.
    fn build_layers(
        &self,
        name: &str,
        tag: &str,
        layers: usize,
        mut fill: impl FnMut(&Path, usize),
    ) -> (String, PathBuf) {
        let layout = self.dir.path().join(format!("oci-{name}"));
        let image = format!("{}:{tag}", layout.display());
        run(Command::new("umoci")
            .arg("init")
            .arg("--layout")
            .arg(&layout));
        run(Command::new("umoci").args(["new", "--image", &image]));
        let bundle = self.dir.path().join(format!("bundle-{name}"));
        run(Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        for i in 0..layers {
            fill(&rootfs, i);
            run(Command::new("umoci")
                .args(["repack", "--refresh-bundle", "--image", &image])
                .arg(&bundle));
        }
        (image, bundle)
    }

    /// Pushes `source` as `dest` (a path on this registry) with skopeo;
    /// `extra` e.g. `["--format", "v2s2"]`. Returns the manifest digest.
    pub fn push(&self, source: &str, dest: &str, extra: &[&str]) -> String {
        let digest_file = self.dir.path().join("pushed-digest");
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("--dest-creds={USER}:{PASSWORD}"))
            .arg("--digestfile")
            .arg(&digest_file)
            .args(extra)
            .arg(source)
            .arg(format!("docker://{}/{dest}", self.addr)));
        std::fs::read_to_string(digest_file)
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
