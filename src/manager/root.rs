//! A container's own root filesystem: the overlay of an image's layers or a
//! `--rootfs` dir under the container's writable layer (see decision 0024),
//! and what an image's config says about the command, env, working dir and
//! user.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use berth_isolator::ContainerId;

use super::{Manager, ManagerError};
use crate::container::LaunchRequest;
use crate::images::{ImageConfig, Reference};
use crate::rootfs_users::RootUsers;
use crate::store::Store;
use berth_protocol::bundle::{RootOverlay, MAX_LOWER};

/// An image resolved for a launch: in the store, its layers unpacked.
#[derive(Debug, Clone)]
pub(super) struct ImageRoot {
    /// The normalized reference.
    pub reference: String,
    pub manifest_digest: String,
    /// The layer dirs, TOPMOST first.
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

/// The dirs of a container's overlay root, in its container dir (0700, the
/// agent's): `root/upper` (the container's writes), `root/work` and the
/// mount point `root/merged`, which stays empty on the host: the shim mounts
/// the overlay in the container's own mount namespace.
pub(super) struct RootDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

impl RootDirs {
    pub fn of(store: &Store, id: &ContainerId) -> Self {
        let root = store.container_dir(id).join("root");
        RootDirs {
            upper: root.join("upper"),
            work: root.join("work"),
            merged: root.join("merged"),
        }
    }

    /// For a restart: the writable layer stays, the overlay's work dir is
    /// emptied (a `volatile` mount leaves `work/incompat/volatile`, which
    /// the next mount refuses) and anything missing is made again.
    pub fn recreate_work(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.work) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700).recursive(true);
        builder.create(&self.work)?;
        builder.mode(0o755);
        for dir in [&self.upper, &self.merged] {
            if !dir.exists() {
                builder.create(dir)?;
            }
        }
        Ok(())
    }

    /// The overlay of `lower` (topmost first) under these dirs; an image's
    /// missing working dir is made (`make_workdir`).
    pub fn overlay(&self, lower: Vec<PathBuf>, make_workdir: bool) -> RootOverlay {
        RootOverlay {
            lower,
            upper: self.upper.clone(),
            work: self.work.clone(),
            make_workdir,
        }
    }
}

/// `image`'s reference pinned to the manifest it resolved to:
/// `registry/repo[:tag]@sha256:...`.
pub(super) fn pinned_reference(image: &ImageRoot) -> String {
    let base = image
        .reference
        .split_once('@')
        .map_or(image.reference.as_str(), |(base, _)| base);
    format!("{base}@{}", image.manifest_digest)
}

impl Manager {
    /// The image a request names, pulled as its policy says and unpacked.
    /// Every failure is a 4xx naming `image` (or `pull`).
    pub(super) fn resolve_image(
        &self,
        request: &LaunchRequest,
    ) -> Result<Option<ImageRoot>, ManagerError> {
        let Some(name) = &request.image else {
            if request.pull.is_some() || request.entrypoint.is_some() {
                return Err(ManagerError::invalid(
                    if request.pull.is_some() {
                        "pull"
                    } else {
                        "entrypoint"
                    },
                    "needs an image",
                ));
            }
            return Ok(None);
        };
        if request.rootfs.is_some() {
            return Err(ManagerError::invalid(
                "image",
                "an image and a rootfs exclude each other",
            ));
        }
        if request.userns.as_deref() == Some("auto") {
            return Err(ManagerError::invalid(
                "userns",
                "auto is not supported with an image yet",
            ));
        }
        let reference = Reference::parse(name)
            .map_err(|e| ManagerError::invalid("image", format!("{name:?}: {e}")))?;
        let policy = request.pull.unwrap_or(self.config.images.pull_policy);
        let images = self.images()?;
        let image = self
            .runtime
            .block_on(images.ensure_image(&reference, policy))
            .map_err(|e| ManagerError::invalid("image", e.to_string()))?;
        let mut layers = crate::images::unpack::unpacked_layers(&images.store, &image)
            .map_err(|e| ManagerError::invalid("image", format!("{reference}: {e}")))?;
        if layers.is_empty() || layers.len() > MAX_LOWER {
            return Err(ManagerError::invalid(
                "image",
                format!(
                    "{reference}: has {} layers; 1 to {MAX_LOWER} can be mounted",
                    layers.len()
                ),
            ));
        }
        layers.reverse();
        Ok(Some(ImageRoot {
            reference: image.reference.clone(),
            manifest_digest: image.manifest_digest.to_string(),
            layers,
            config: image.config.clone(),
        }))
    }
}

/// Applies an image's config to a request with Docker's semantics:
/// `entrypoint` (the request's, else the image's) then the request's
/// `command`, else the image's `Cmd` unless the request replaced the
/// entrypoint; the image's `Env` under the request's; its `WorkingDir`
/// (default `/`) unless the request has one; its `User` unless the request
/// has one.
pub(super) fn apply_image_config(request: &mut LaunchRequest, image: &ImageConfig) {
    let entrypoint = match &request.entrypoint {
        Some(e) => e.clone(),
        None => image.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if !request.command.is_empty() {
        std::mem::take(&mut request.command)
    } else if request.entrypoint.is_some() {
        Vec::new()
    } else {
        image.cmd.clone().unwrap_or_default()
    };
    request.command = entrypoint.into_iter().chain(cmd).collect();

    let mut env: BTreeMap<String, String> = image
        .env
        .iter()
        .flatten()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect();
    env.append(&mut request.env);
    request.env = env;

    if request.workdir.is_none() {
        request.workdir = Some(
            image
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".to_string()),
        );
    }
    if request.user.is_none() && request.user_name.is_none() {
        request.user_name = image.user.clone().filter(|u| !u.is_empty());
    }
}

/// Resolves `user_name` in the root made of `layers` (topmost first) into
/// the request's numeric `user`.
pub(super) fn resolve_user_name(
    request: &mut LaunchRequest,
    layers: &[&Path],
) -> Result<(), ManagerError> {
    let Some(name) = request.user_name.clone() else {
        return Ok(());
    };
    if request.user.is_some() {
        return Err(ManagerError::invalid(
            "user_name",
            "give user or user_name, not both",
        ));
    }
    let user = match crate::container::User::parse(&name) {
        Some(user) => user,
        None => RootUsers::read(layers)
            .and_then(|users| users.resolve(&name))
            .map_err(|e| ManagerError::invalid("user_name", e.to_string()))?,
    };
    request.user = Some(user);
    Ok(())
}

impl Manager {
    /// The dir holding a container's writes to its root (`root/upper`;
    /// absent for a container on the host's root), for its disk usage.
    pub fn upper_dir(&self, id: &ContainerId) -> PathBuf {
        RootDirs::of(&self.store, id).upper
    }
}

/// The overlay root the launch's helper thread builds as a detached mount
/// (decision 0046): the shim's end of the socket it goes to the container
/// child on, once built ([`berth_protocol::root_mount`]; decision 0047:
/// the launch does not wait for it). A failed build (a kernel without the
/// new mount API, too many layers for one `fsconfig` value) leaves the
/// mount to the child, as before.
pub(super) struct RootMountBuild(Option<std::os::fd::OwnedFd>);

/// The helper's job that builds it.
pub(super) type RootMountJob = Box<dyn FnOnce() + Send>;

impl RootMountBuild {
    /// The build of `overlay`, and the job for the helper. With a user
    /// namespace the container's root mounts the overlay itself (its mount
    /// belongs to that namespace), so nothing is built.
    /// `BERTH_TEST_NO_ROOT_MOUNT` in the agent's environment also builds
    /// nothing: tests of the fallback.
    pub(super) fn of(
        overlay: &RootOverlay,
        userns: bool,
    ) -> (RootMountBuild, Option<RootMountJob>) {
        if userns || std::env::var_os("BERTH_TEST_NO_ROOT_MOUNT").is_some() {
            return (RootMountBuild(None), None);
        }
        let (ours, theirs) = match std::os::unix::net::UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("a socket for the root mount: {e}; the container mounts its overlay root itself");
                return (RootMountBuild(None), None);
            }
        };
        let overlay = overlay.clone();
        let job = move || {
            let built = match berth_shim::overlay::detached(&overlay) {
                Ok(mount) => Some(mount),
                Err(e) => {
                    tracing::debug!("{e}; the container mounts its overlay root itself");
                    None
                }
            };
            use std::os::fd::AsFd;
            let sent =
                berth_protocol::root_mount::send(ours.as_fd(), built.as_ref().map(|m| m.as_fd()));
            if let Err(e) = sent {
                // The launch failed before the container took it: the
                // mount dissolves with its last descriptor, here.
                tracing::debug!("send the root mount: {e}");
            }
        };
        (RootMountBuild(Some(theirs.into())), Some(Box::new(job)))
    }

    /// Nothing to build.
    pub(super) fn none() -> RootMountBuild {
        RootMountBuild(None)
    }

    /// The shim's end of the socket (`None`: the container mounts the
    /// overlay).
    pub(super) fn take(&mut self) -> Option<std::os::fd::OwnedFd> {
        self.0.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(command: &[&str]) -> LaunchRequest {
        serde_json::from_value(serde_json::json!({
            "command": command, "image": "busybox"
        }))
        .unwrap()
    }

    fn config() -> ImageConfig {
        serde_json::from_value(serde_json::json!({
            "Entrypoint": ["/bin/ep"], "Cmd": ["default"],
            "Env": ["PATH=/img/bin", "A=image", "B=image"],
            "WorkingDir": "/srv", "User": "www"
        }))
        .unwrap()
    }

    #[test]
    fn docker_semantics() {
        let mut r = request(&[]);
        r.env.insert("A".into(), "request".into());
        apply_image_config(&mut r, &config());
        assert_eq!(r.command, ["/bin/ep", "default"]);
        assert_eq!(r.env["A"], "request");
        assert_eq!(r.env["B"], "image");
        assert_eq!(r.env["PATH"], "/img/bin");
        assert_eq!(r.workdir.as_deref(), Some("/srv"));
        assert_eq!(r.user_name.as_deref(), Some("www"));

        // Arguments replace Cmd.
        let mut r = request(&["x", "y"]);
        apply_image_config(&mut r, &config());
        assert_eq!(r.command, ["/bin/ep", "x", "y"]);

        // --entrypoint replaces Entrypoint and clears Cmd.
        let mut r = request(&[]);
        r.entrypoint = Some(vec!["/bin/sh".into()]);
        apply_image_config(&mut r, &config());
        assert_eq!(r.command, ["/bin/sh"]);
        let mut r = request(&["-c", "true"]);
        r.entrypoint = Some(vec!["/bin/sh".into()]);
        r.workdir = Some("/w".into());
        r.user = Some(crate::container::User { uid: 5, gid: None });
        apply_image_config(&mut r, &config());
        assert_eq!(r.command, ["/bin/sh", "-c", "true"]);
        assert_eq!(r.workdir.as_deref(), Some("/w"));
        assert_eq!(r.user_name, None);

        // No WorkingDir: "/".
        let mut r = request(&[]);
        apply_image_config(&mut r, &ImageConfig::default());
        assert_eq!(r.workdir.as_deref(), Some("/"));
        assert!(r.command.is_empty());
    }
}
