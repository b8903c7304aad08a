//! The pipes between the monitor and the container child.
//!
//! - report pipe, child → monitor, close-on-exec in the child: one `R` byte
//!   when setup is done; a byte naming the [`FailureKind`] (`E` setup, `X`
//!   exec, `W` workdir, `T` mount target) and a message when setup or exec
//!   failed. Its EOF
//!   after the release means the exec succeeded (the kernel closed the write
//!   end as part of it), which is how runc learns the same.
//! - go pipe, monitor → child: one byte releases the child to exec; EOF (the
//!   monitor died) makes it exit instead. A child in a new user namespace
//!   first gets an `M` byte on it: its id maps are written.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use berth_protocol::FailureKind;
use nix::errno::Errno;
use nix::unistd::{read, write};

const READY: u8 = b'R';
const ERROR: u8 = b'E';
const EXEC_ERROR: u8 = b'X';
const WORKDIR_ERROR: u8 = b'W';
const ESCAPE_ERROR: u8 = b'T';
const GO: u8 = b'G';
const MAPS: u8 = b'M';

/// What the child said about its setup.
#[derive(Debug, PartialEq, Eq)]
pub enum SetupReport {
    Ready,
    Failed(FailureKind, String),
    /// The child died without a word (killed, or crashed).
    Vanished,
}

pub fn report_ready(report: &OwnedFd) -> io::Result<()> {
    write_all(report, &[READY])
}

/// Best effort: the monitor may be gone, and there is nobody else to tell.
pub fn report_error(report: &OwnedFd, kind: FailureKind, message: &str) {
    let mut buf = Vec::with_capacity(message.len() + 1);
    buf.push(match kind {
        FailureKind::Exec => EXEC_ERROR,
        FailureKind::Workdir => WORKDIR_ERROR,
        FailureKind::MountEscape => ESCAPE_ERROR,
        FailureKind::Setup => ERROR,
    });
    buf.extend_from_slice(message.as_bytes());
    let _ = write_all(report, &buf);
}

pub fn read_setup(report: &OwnedFd) -> io::Result<SetupReport> {
    let mut byte = [0u8; 1];
    if read_retry(report, &mut byte)? == 0 {
        return Ok(SetupReport::Vanished);
    }
    match byte[0] {
        READY => Ok(SetupReport::Ready),
        kind => Ok(SetupReport::Failed(
            failure_kind(kind),
            read_message(report)?,
        )),
    }
}

fn failure_kind(byte: u8) -> FailureKind {
    match byte {
        EXEC_ERROR => FailureKind::Exec,
        WORKDIR_ERROR => FailureKind::Workdir,
        ESCAPE_ERROR => FailureKind::MountEscape,
        _ => FailureKind::Setup,
    }
}

/// After the release: `None` when the exec succeeded, else the child's error.
pub fn read_exec(report: &OwnedFd) -> io::Result<Option<(FailureKind, String)>> {
    let mut byte = [0u8; 1];
    if read_retry(report, &mut byte)? == 0 {
        return Ok(None);
    }
    Ok(Some((failure_kind(byte[0]), read_message(report)?)))
}

pub fn release(go: &OwnedFd) -> io::Result<()> {
    write_all(go, &[GO])
}

/// Tells a child in a new user namespace that its id maps are written.
pub fn maps_written(go: &OwnedFd) -> io::Result<()> {
    write_all(go, &[MAPS])
}

/// In the child: blocks until its id maps are written (`true`) or the
/// monitor is gone.
pub fn wait_maps(go: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    matches!(read_retry(go, &mut byte), Ok(1)) && byte[0] == MAPS
}

/// In the child: blocks until released (`true`) or the monitor is gone.
pub fn wait_release(go: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    matches!(read_retry(go, &mut byte), Ok(1))
}

fn read_message(fd: &OwnedFd) -> io::Result<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match read_retry(fd, &mut buf)? {
            0 => break,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `read(2)` on one of the pipes, again after a signal.
pub(crate) fn read_retry(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match read(&fd, buf) {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

fn write_all(fd: &OwnedFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::pipe;

    #[test]
    fn ready_then_exec_eof() {
        let (r, w) = pipe().unwrap();
        report_ready(&w).unwrap();
        drop(w);
        assert_eq!(read_setup(&r).unwrap(), SetupReport::Ready);
        assert_eq!(read_exec(&r).unwrap(), None);
    }

    #[test]
    fn error_message_round_trips() {
        let (r, w) = pipe().unwrap();
        report_error(
            &w,
            FailureKind::Exec,
            "exec \"x\": no such file or directory",
        );
        drop(w);
        assert_eq!(
            read_setup(&r).unwrap(),
            SetupReport::Failed(
                FailureKind::Exec,
                "exec \"x\": no such file or directory".into()
            )
        );
    }

    #[test]
    fn every_kind_crosses_the_pipe() {
        for kind in [
            FailureKind::Exec,
            FailureKind::Workdir,
            FailureKind::MountEscape,
            FailureKind::Setup,
        ] {
            let (r, w) = pipe().unwrap();
            report_ready(&w).unwrap();
            report_error(&w, kind, "m");
            drop(w);
            assert_eq!(read_setup(&r).unwrap(), SetupReport::Ready);
            assert_eq!(read_exec(&r).unwrap(), Some((kind, "m".into())));
        }
    }

    #[test]
    fn maps_then_go() {
        let (r, w) = pipe().unwrap();
        maps_written(&w).unwrap();
        release(&w).unwrap();
        drop(w);
        assert!(wait_maps(&r));
        assert!(wait_release(&r));
        assert!(!wait_maps(&r), "EOF: the monitor is gone");
    }

    #[test]
    fn silent_death_is_vanished() {
        let (r, w) = pipe().unwrap();
        drop(w);
        assert_eq!(read_setup(&r).unwrap(), SetupReport::Vanished);
    }
}
