//! An idle shim's rehearsal of its launch's first steps (decision 0057).
//!
//! A successor is a fork of an idle shim: its heap and stack are its
//! parent's, shared copy-on-write, and the code it has not run yet is not
//! in its page tables. Its launch then pays a page fault for every heap and
//! stack page it writes and every code page it runs first: about 120 on
//! this path, ~250 µs of a launch that waits for them. A successor nobody
//! waits for (one the pool's refill asked for) reads and checks a sample
//! bundle config first, as its launch will read and check the real one,
//! and frees what it made: the launch's read finds the allocator's free
//! memory already its own and the parser's code mapped.
//!
//! The memory this keeps is what the launch would have touched anyway; a
//! successor a launch waits for does not rehearse (the launch would wait
//! for it).

use std::path::Path;

use oci_spec::runtime::Spec;

use super::spec::ContainerConfig;

/// A bundle config as the agent writes one for a `--rootfs` container with
/// the default profile (its seccomp rules included, as they are parsed).
const SAMPLE_CONFIG: &[u8] = include_bytes!("rehearsal_config.json");

/// Parses and checks [`SAMPLE_CONFIG`] like a launch's config, and drops
/// the result. Never fails: a rehearsal that goes wrong only rehearses
/// less.
pub fn rehearse() {
    let Ok(mut spec) = serde_json::from_slice::<Spec>(SAMPLE_CONFIG) else {
        return;
    };
    // The seccomp check would look for the compiled program in a bundle
    // this sample has not: checked without it, it would look up every
    // syscall name in libseccomp's tables, which no launch does.
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(None);
    }
    let config = ContainerConfig::from_spec(&spec, Path::new("/"));
    drop(std::hint::black_box(config));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_config_is_checked_as_a_launch_checks_one() {
        // A sample that failed early would rehearse only part of the path.
        let spec: Spec = serde_json::from_slice(SAMPLE_CONFIG).unwrap();
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        assert!(
            seccomp.is_some_and(|s| s.syscalls().as_ref().is_some_and(|r| r.len() > 10)),
            "the sample carries the default profile's rules"
        );
        let mut spec = spec;
        spec.linux_mut().as_mut().unwrap().set_seccomp(None);
        let config = ContainerConfig::from_spec(&spec, Path::new("/")).unwrap();
        assert!(config.overlay.is_some());
        assert!(!config.mounts.is_empty());
        rehearse();
    }
}
