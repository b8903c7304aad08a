//! Checking a bind mount's host path against the allow-list, and opening
//! it so that no symlink is followed.
//!
//! The agent resolves the requested path once (`canonicalize`: every
//! symlink and `..` resolved) and checks the result lies under an allowed
//! prefix (itself resolved). The bundle carries that resolved path, and the
//! shim opens it with [`open_no_follow`]: a symlink put anywhere on the
//! path after the check makes the open fail (`ELOOP`) instead of leading
//! elsewhere, so what gets mounted is exactly the checked path.

use std::path::{Path, PathBuf};

/// Resolves `source` and checks it against `allowed`; the error is the
/// message for a 400 naming the field.
pub fn resolve_allowed(source: &str, allowed: &[PathBuf]) -> Result<PathBuf, String> {
    if source.contains('\0') {
        return Err("must not contain NUL".into());
    }
    let path = Path::new(source);
    if !path.is_absolute() {
        return Err(format!("host path must be absolute, got {source:?}"));
    }
    if allowed.is_empty() {
        return Err(format!(
            "{source} is not under an allowed host path: this agent allows no bind mounts \
             ([volumes] allowed_host_paths is empty)"
        ));
    }
    let resolved = std::fs::canonicalize(path).map_err(|e| format!("host path {source}: {e}"))?;
    let under = allowed.iter().any(|prefix| {
        std::fs::canonicalize(prefix).is_ok_and(|prefix| resolved.starts_with(prefix))
    });
    if !under {
        let shown = if resolved.as_path() == path {
            String::new()
        } else {
            format!(" (it resolves to {})", resolved.display())
        };
        return Err(format!(
            "{source}{shown} is not under an allowed host path ({})",
            allowed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // The path just resolved has no symlink; one now means a swap.
    open_no_follow(&resolved).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => format!(
            "host path {}: a symlink appeared on it after it was resolved",
            resolved.display()
        ),
        _ => format!("host path {}: {e}", resolved.display()),
    })?;
    Ok(resolved)
}

pub use berth_sys::openat2::open_no_follow;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        std::fs::create_dir_all(allowed.join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", allowed.join("evil")).unwrap();
        std::os::unix::fs::symlink("data", allowed.join("good")).unwrap();
        let list = vec![allowed.clone()];
        let data = allowed.join("data");
        let real = std::fs::canonicalize(&data).unwrap();
        assert_eq!(
            resolve_allowed(data.to_str().unwrap(), &list).unwrap(),
            real
        );
        assert_eq!(
            resolve_allowed(allowed.join("good").to_str().unwrap(), &list).unwrap(),
            real
        );
        let err = resolve_allowed(allowed.join("evil").to_str().unwrap(), &list).unwrap_err();
        assert!(err.contains("resolves to /etc"), "{err}");
        let dots = format!("{}/data/../../", allowed.display());
        assert!(resolve_allowed(&dots, &list).is_err());
        assert!(resolve_allowed("/etc", &[]).is_err());
        assert!(resolve_allowed("relative", &list).is_err());
        assert!(resolve_allowed(allowed.join("missing").to_str().unwrap(), &list).is_err());
        // A symlink on the path: refused by the no-follow open.
        assert!(open_no_follow(&allowed.join("good")).is_err());
        assert!(open_no_follow(&real).is_ok());
    }
}
