//! The launch an idle shim waits for (decision 0043). The agent keeps a few
//! shims started ahead (`berth-shim pool`): each has detached and waits on
//! its socket (fd 3) for one handover, the same [`ShimArgs`] a freshly
//! started shim reads from its command line, with the prepared mounts'
//! descriptors attached (`SCM_RIGHTS`). From then on it is a container's
//! shim like any other.
//!
//! On the wire: a 4-byte little-endian length, then the arguments
//! ([`ShimArgs::to_args`]) each ended by a NUL byte. `args.files[i]` names
//! descriptor [`FILES_FD_BASE`]` + i`, which the shim makes of the `i`-th
//! descriptor received.
//!
//! Before its handover, an idle shim may be asked for a successor
//! (decision 0045): a length of 0 with exactly one descriptor attached, a
//! new socket to the agent. The idle shim forks a fresh idle shim on that
//! socket (which says [`Idle`](crate::ShimMessage::Idle) on it) and goes on
//! waiting. A fork of a shim that has served nobody replaces an exec of
//! the shim binary.

use std::ffi::OsString;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use berth_sys::fd_passing::{recv_with_fds, send_with_fds, MAX_FDS};
use thiserror::Error;

use crate::shim_args::{ArgsError, ShimArgs, FILES_FD_BASE};

/// The shim's first argument that makes it an idle shim:
/// `berth-shim pool --runtime-dir DIR`, the option naming the agent's
/// runtime dir for `ps` (the shim does not use it).
pub const POOL_COMMAND: &str = "pool";

/// See [`POOL_COMMAND`].
pub const RUNTIME_DIR_OPTION: &str = "--runtime-dir";

/// A handover larger than this is refused (the arguments are a few paths).
pub const MAX_HANDOVER: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum HandoverError {
    #[error("handover socket: {0}")]
    Io(#[from] io::Error),
    #[error("handover of {0} bytes, at most {MAX_HANDOVER}")]
    TooLarge(usize),
    #[error("the agent closed the socket in the middle of a handover")]
    Truncated,
    #[error("handover arguments: {0}")]
    Args(#[from] ArgsError),
    #[error("handover names {named} prepared mounts, {received} descriptors came")]
    Files { named: usize, received: usize },
    #[error("a successor request carries one socket, {0} descriptors came")]
    Successor(usize),
}

/// What an idle shim receives.
#[derive(Debug)]
pub enum Received {
    /// Its launch: the arguments and the prepared mounts' descriptors.
    Launch(ShimArgs, Vec<OwnedFd>),
    /// A request for a successor on this socket (see the module doc).
    Successor(OwnedFd),
}

/// The agent's side: hands `args` and the descriptors of its prepared
/// mounts (`files[i]` for `args.files[i]`) to an idle shim.
pub fn send(
    socket: BorrowedFd<'_>,
    args: &ShimArgs,
    files: &[BorrowedFd<'_>],
) -> Result<(), HandoverError> {
    check_files(args, files.len())?;
    let mut payload = Vec::new();
    for arg in args.to_args() {
        payload.extend_from_slice(arg.as_bytes());
        payload.push(0);
    }
    if payload.len() > MAX_HANDOVER {
        return Err(HandoverError::TooLarge(payload.len()));
    }
    let mut message = (payload.len() as u32).to_le_bytes().to_vec();
    message.extend_from_slice(&payload);
    send_with_fds(socket, &message, files)?;
    Ok(())
}

/// The agent's side: asks an idle shim for a successor on `successor`, the
/// shim's end of a new socket pair.
pub fn send_successor(
    socket: BorrowedFd<'_>,
    successor: BorrowedFd<'_>,
) -> Result<(), HandoverError> {
    send_with_fds(socket, &0u32.to_le_bytes(), &[successor])?;
    Ok(())
}

/// The idle shim's side: waits for a handover or a successor request.
/// `Ok(None)` when the agent closed the socket before sending one (it
/// stopped, or shrank its pool). Reads exactly one message, nothing after
/// it.
pub fn receive(socket: BorrowedFd<'_>) -> Result<Option<Received>, HandoverError> {
    let mut prefix = [0u8; 4];
    let (mut got, mut fds) = recv_with_fds(socket, &mut prefix)?;
    if got == 0 {
        return Ok(None);
    }
    while got < prefix.len() {
        got += read_some(socket, &mut prefix[got..])?;
    }
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 {
        return match (fds.pop(), fds.len()) {
            (Some(successor), 0) => Ok(Some(Received::Successor(successor))),
            (popped, more) => Err(HandoverError::Successor(more + popped.iter().count())),
        };
    }
    if len > MAX_HANDOVER {
        return Err(HandoverError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    let mut got = 0;
    while got < len {
        got += read_some(socket, &mut payload[got..])?;
    }
    let args = payload
        .split(|&b| b == 0)
        .take(payload.iter().filter(|&&b| b == 0).count())
        .map(|arg| OsString::from_vec(arg.to_vec()));
    let args = ShimArgs::parse(args)?;
    check_files(&args, fds.len())?;
    Ok(Some(Received::Launch(args, fds)))
}

fn read_some(socket: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, HandoverError> {
    let (n, extra) = recv_with_fds(socket, buf)?;
    if n == 0 {
        return Err(HandoverError::Truncated);
    }
    // Descriptors only come with the first byte; any others are closed here.
    drop(extra);
    Ok(n)
}

/// The descriptors must be the prepared mounts' in order, then the root
/// mount's and the cgroups-ready pipe's if they are named.
fn check_files(args: &ShimArgs, received: usize) -> Result<(), HandoverError> {
    let named = args.descriptors();
    let in_order = (named.iter().enumerate()).all(|(i, fd)| *fd == FILES_FD_BASE + i as i32);
    if named.len() != received || received > MAX_FDS || !in_order {
        return Err(HandoverError::Files {
            named: named.len(),
            received,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_settings::LogSettings;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn args(files: usize) -> ShimArgs {
        ShimArgs {
            id: "c1".into(),
            bundle: "/run/berth/c1/bundle".into(),
            state_dir: "/run/berth/c1".into(),
            log_dir: "/var/lib/berth/c1/logs with space".into(),
            log: LogSettings::default(),
            files: (0..files)
                .map(|i| (format!("/run/secrets/{i}").into(), FILES_FD_BASE + i as i32))
                .collect(),
            root_mount: None,
            cgroups: Vec::new(),
            cgroups_ready: None,
        }
    }

    #[test]
    fn a_handover_round_trips_with_its_descriptors() {
        let (agent, shim) = UnixStream::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"secret").unwrap();
        let sent = args(1);
        send(agent.as_fd(), &sent, &[file.as_fd()]).unwrap();
        // Whatever the agent writes next is not swallowed by the handover.
        (&agent).write_all(b"next").unwrap();
        let Some(Received::Launch(got, fds)) = receive(shim.as_fd()).unwrap() else {
            panic!("not a launch");
        };
        assert_eq!(got, sent);
        let mut copy = std::fs::File::from(fds.into_iter().next().unwrap());
        copy.rewind().unwrap();
        let mut text = String::new();
        copy.read_to_string(&mut text).unwrap();
        assert_eq!(text, "secret");
        let mut next = [0u8; 4];
        (&shim).read_exact(&mut next).unwrap();
        assert_eq!(&next, b"next");
    }

    #[test]
    fn a_successor_request_carries_exactly_one_socket() {
        let (agent, shim) = UnixStream::pair().unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        send_successor(agent.as_fd(), theirs.as_fd()).unwrap();
        drop(theirs);
        let Some(Received::Successor(socket)) = receive(shim.as_fd()).unwrap() else {
            panic!("not a successor request");
        };
        // The socket received is the other end of `ours`.
        (&UnixStream::from(socket)).write_all(b"idle").unwrap();
        let mut said = [0u8; 4];
        (&ours).read_exact(&mut said).unwrap();
        assert_eq!(&said, b"idle");
        // Without a socket, or with two, it is refused.
        (&agent).write_all(&0u32.to_le_bytes()).unwrap();
        assert!(matches!(
            receive(shim.as_fd()),
            Err(HandoverError::Successor(0))
        ));
        let (a, b) = UnixStream::pair().unwrap();
        send_with_fds(agent.as_fd(), &0u32.to_le_bytes(), &[a.as_fd(), b.as_fd()]).unwrap();
        assert!(matches!(
            receive(shim.as_fd()),
            Err(HandoverError::Successor(2))
        ));
    }

    #[test]
    fn a_closed_socket_before_any_byte_is_no_handover() {
        let (agent, shim) = UnixStream::pair().unwrap();
        drop(agent);
        assert!(receive(shim.as_fd()).unwrap().is_none());
    }

    #[test]
    fn a_handover_cut_short_is_an_error() {
        let (agent, shim) = UnixStream::pair().unwrap();
        (&agent).write_all(&100u32.to_le_bytes()).unwrap();
        (&agent).write_all(b"--id\0").unwrap();
        drop(agent);
        assert!(matches!(
            receive(shim.as_fd()),
            Err(HandoverError::Truncated)
        ));
    }

    #[test]
    fn an_oversized_length_is_refused_without_reading_it() {
        let (agent, shim) = UnixStream::pair().unwrap();
        (&agent).write_all(&u32::MAX.to_le_bytes()).unwrap();
        assert!(matches!(
            receive(shim.as_fd()),
            Err(HandoverError::TooLarge(_))
        ));
    }

    #[test]
    fn a_root_mount_descriptor_follows_the_files() {
        let (agent, shim) = UnixStream::pair().unwrap();
        let (secret, root) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
        let mut sent = args(1);
        sent.root_mount = Some(FILES_FD_BASE + 1);
        send(agent.as_fd(), &sent, &[secret.as_fd(), root.as_fd()]).unwrap();
        let Some(Received::Launch(got, fds)) = receive(shim.as_fd()).unwrap() else {
            panic!("not a launch");
        };
        assert_eq!((got, fds.len()), (sent.clone(), 2));
        // Named elsewhere than right after the files, or without its
        // descriptor: refused.
        sent.root_mount = Some(FILES_FD_BASE);
        assert!(send(agent.as_fd(), &sent, &[secret.as_fd(), root.as_fd()]).is_err());
        sent.root_mount = Some(FILES_FD_BASE + 1);
        assert!(matches!(
            send(agent.as_fd(), &sent, &[secret.as_fd()]),
            Err(HandoverError::Files {
                named: 2,
                received: 1
            })
        ));
    }

    #[test]
    fn a_cgroups_ready_descriptor_comes_last() {
        let (agent, shim) = UnixStream::pair().unwrap();
        let fds = [(); 3].map(|()| tempfile::tempfile().unwrap());
        let mut sent = args(1);
        sent.root_mount = Some(FILES_FD_BASE + 1);
        sent.cgroups = vec!["/sys/fs/cgroup/memory/berth/c1".into()];
        sent.cgroups_ready = Some(FILES_FD_BASE + 2);
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        send(agent.as_fd(), &sent, &borrowed).unwrap();
        let Some(Received::Launch(got, received)) = receive(shim.as_fd()).unwrap() else {
            panic!("not a launch");
        };
        assert_eq!((got, received.len()), (sent.clone(), 3));
        // Before the root mount's, or without its descriptor: refused.
        sent.cgroups_ready = Some(FILES_FD_BASE + 1);
        sent.root_mount = Some(FILES_FD_BASE + 2);
        assert!(send(agent.as_fd(), &sent, &borrowed).is_err());
        sent.root_mount = None;
        sent.cgroups_ready = Some(FILES_FD_BASE + 1);
        assert!(matches!(
            send(agent.as_fd(), &sent, &borrowed[..1]),
            Err(HandoverError::Files {
                named: 2,
                received: 1
            })
        ));
    }

    #[test]
    fn named_files_without_their_descriptors_are_refused_on_both_sides() {
        let (agent, shim) = UnixStream::pair().unwrap();
        assert!(matches!(
            send(agent.as_fd(), &args(2), &[]),
            Err(HandoverError::Files {
                named: 2,
                received: 0
            })
        ));
        // A sender that lies about them is caught by the shim too.
        let mut payload = Vec::new();
        for arg in args(1).to_args() {
            payload.extend_from_slice(arg.as_bytes());
            payload.push(0);
        }
        (&agent)
            .write_all(&(payload.len() as u32).to_le_bytes())
            .unwrap();
        (&agent).write_all(&payload).unwrap();
        assert!(matches!(
            receive(shim.as_fd()),
            Err(HandoverError::Files {
                named: 1,
                received: 0
            })
        ));
    }
}
