//! The bundle of a container with a user namespace: a `user` namespace,
//! `linux.uidMappings`/`gidMappings`, and `/sys` as a read-only bind of the
//! host's when the container shares the host's network.

use std::path::Path;

use oci_spec::runtime::{
    LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder, Spec,
};

use super::{BundleError, NetworkMode};
use crate::userns::UsernsMapping;

/// Adds the user namespace and the id mappings to a built spec.
pub fn apply(
    spec: &mut Spec,
    mapping: &UsernsMapping,
    network: &NetworkMode,
) -> Result<(), BundleError> {
    let map = |host: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(mapping.size)
            .build()
    };
    let (uid_map, gid_map) = (map(mapping.uid)?, map(mapping.gid)?);
    if let Some(linux) = spec.linux_mut() {
        let user = LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()?;
        linux
            .namespaces_mut()
            .get_or_insert_with(Vec::new)
            .insert(0, user);
        linux.set_uid_mappings(Some(vec![uid_map]));
        linux.set_gid_mappings(Some(vec![gid_map]));
    }
    // sysfs can only be mounted by the owner of the network namespace: in
    // the host's network or one joined by path, the container gets the
    // host's /sys read-only instead (as runc does).
    if *network != NetworkMode::None {
        if let Some(mounts) = spec.mounts_mut() {
            for m in mounts.iter_mut() {
                if m.destination() == Path::new("/sys") {
                    *m = MountBuilder::default()
                        .destination("/sys")
                        .typ("bind")
                        .source("/sys")
                        .options(vec![
                            "rbind".into(),
                            "nosuid".into(),
                            "noexec".into(),
                            "nodev".into(),
                            "ro".into(),
                            "rro".into(),
                        ])
                        .build()?;
                }
            }
        }
    }
    Ok(())
}
