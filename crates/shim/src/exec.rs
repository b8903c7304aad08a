//! Resolving the command like `execvp` and exec'ing it.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{access, execve, AccessFlags};

/// The PATH runc uses when the spec's env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The value of `PATH` in an environment list of `KEY=VALUE` strings.
pub fn path_from_env<S: AsRef<str>>(env: &[S]) -> Option<&str> {
    env.iter()
        .rev()
        .find_map(|e| e.as_ref().strip_prefix("PATH="))
}

/// Finds `arg0` like execvp: as is when it holds a `/`, else the first
/// executable file of that name in the `PATH` directories. `check` tells
/// whether a candidate is an executable file; its error is kept and returned
/// when nothing fits (so a found-but-not-executable file says EACCES rather
/// than ENOENT).
pub fn resolve<F>(arg0: &str, path: Option<&str>, check: F) -> Result<PathBuf, Errno>
where
    F: Fn(&Path) -> Result<(), Errno>,
{
    if arg0.is_empty() {
        return Err(Errno::ENOENT);
    }
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    let mut err = Errno::ENOENT;
    for dir in path.unwrap_or(DEFAULT_PATH).split(':') {
        // An empty entry means the current directory, as in execvp.
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Errno::EACCES) => err = Errno::EACCES,
            Err(_) => {}
        }
    }
    Err(err)
}

/// Whether `path` is an executable regular file, for [`resolve`].
pub fn is_executable(path: &Path) -> Result<(), Errno> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
    if !meta.is_file() {
        return Err(Errno::EACCES);
    }
    access(path, AccessFlags::X_OK)
}

/// Resolves and execs; returns only on failure, with runc's message shape
/// `exec "ARG0": no such file or directory`.
pub fn exec(args: &[CString], env: &[CString], path_var: Option<&str>) -> String {
    let arg0 = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let errno = match resolve(&arg0, path_var, is_executable) {
        Ok(path) => match CString::new(path.as_os_str().as_bytes()) {
            Ok(c_path) => match execve::<&CStr, &CStr>(
                &c_path,
                &args.iter().map(|a| a.as_c_str()).collect::<Vec<_>>(),
                &env.iter().map(|e| e.as_c_str()).collect::<Vec<_>>(),
            ) {
                Err(errno) => errno,
                Ok(never) => match never {},
            },
            Err(_) => Errno::EINVAL,
        },
        Err(errno) => errno,
    };
    format!("exec {arg0:?}: {}", errno_text(errno))
}

/// The strerror text, lowercased like Go's, without nix's "ENOENT: " prefix.
pub fn errno_text(errno: Errno) -> String {
    let desc = errno.desc();
    let mut chars = desc.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_from_env_takes_last() {
        assert_eq!(
            path_from_env(&["A=1", "PATH=/a", "PATH=/b:/c"]),
            Some("/b:/c")
        );
        assert_eq!(path_from_env(&["A=1"]), None);
    }

    #[test]
    fn slash_means_no_search() {
        let p = resolve("./run.sh", Some("/bin"), |_| panic!("no lookup")).unwrap();
        assert_eq!(p, PathBuf::from("./run.sh"));
    }

    #[test]
    fn searches_path_in_order() {
        let found = resolve("sh", Some("/nope:/usr/bin:/bin"), |p| {
            if p == Path::new("/usr/bin/sh") || p == Path::new("/bin/sh") {
                Ok(())
            } else {
                Err(Errno::ENOENT)
            }
        })
        .unwrap();
        assert_eq!(found, PathBuf::from("/usr/bin/sh"));
    }

    #[test]
    fn default_path_when_unset() {
        let found = resolve("tool", None, |p| {
            if p == Path::new("/sbin/tool") {
                Ok(())
            } else {
                Err(Errno::ENOENT)
            }
        })
        .unwrap();
        assert_eq!(found, PathBuf::from("/sbin/tool"));
    }

    #[test]
    fn reports_eacces_over_enoent() {
        let err = resolve("x", Some("/a:/b"), |p| {
            if p == Path::new("/a/x") {
                Err(Errno::EACCES)
            } else {
                Err(Errno::ENOENT)
            }
        })
        .unwrap_err();
        assert_eq!(err, Errno::EACCES);
        assert_eq!(
            resolve("x", Some("/a"), |_| Err(Errno::ENOENT)).unwrap_err(),
            Errno::ENOENT
        );
    }

    #[test]
    fn errno_text_is_lowercase() {
        assert_eq!(errno_text(Errno::ENOENT), "no such file or directory");
    }
}
