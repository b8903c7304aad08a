//! The root overlay the agent builds as a detached mount (decision 0046),
//! on its way to the container's process (decision 0047).
//!
//! The agent builds it on a helper thread while the launch goes on, so it
//! is not ready at the handover. The shim gets one end of a unix socket
//! instead (`--root-fd`); its container child, which inherits it, takes
//! the mount from it right before it sets up its root. One message: the
//! byte 1 with the mount's descriptor attached, or the byte 0 without one
//! (the agent could not build it: the child mounts the overlay itself).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use berth_sys::fd_passing::{recv_with_fds, send_with_fds};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RootMountError {
    #[error("receive the agent's root mount: {0}")]
    Io(#[from] io::Error),
    #[error("the agent went away before it sent the root mount")]
    Closed,
    #[error("the agent's root mount message is malformed ({bytes} bytes, {fds} descriptors)")]
    Malformed { bytes: usize, fds: usize },
}

/// The agent's side: sends the built mount, or `None` when it could not
/// build one.
pub fn send(socket: BorrowedFd<'_>, mount: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = mount.into_iter().collect();
    send_with_fds(socket, &[u8::from(!fds.is_empty())], &fds)
}

/// The container child's side: the mount, or `None` when the agent built
/// none. Waits until the agent has sent.
pub fn receive(socket: BorrowedFd<'_>) -> Result<Option<OwnedFd>, RootMountError> {
    let mut byte = [0u8; 1];
    // `recv_with_fds` tries again after a signal itself.
    let (n, mut fds) = recv_with_fds(socket, &mut byte)?;
    match (n, byte[0], fds.len()) {
        (0, _, _) => Err(RootMountError::Closed),
        (1, 1, 1) => Ok(fds.pop()),
        (1, 0, 0) => Ok(None),
        (bytes, _, fds) => Err(RootMountError::Malformed { bytes, fds }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_mount_or_none_crosses_and_a_closed_socket_is_an_error() {
        let (agent, child) = UnixStream::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        send(agent.as_fd(), Some(file.as_fd())).unwrap();
        let got = std::fs::File::from(receive(child.as_fd()).unwrap().unwrap());
        // The same open file: an offset moved through one shows in the other.
        file.seek(io::SeekFrom::Start(7)).unwrap();
        assert_eq!((&got).stream_position().unwrap(), 7);

        send(agent.as_fd(), None).unwrap();
        assert!(receive(child.as_fd()).unwrap().is_none());

        drop(agent);
        assert!(matches!(
            receive(child.as_fd()),
            Err(RootMountError::Closed)
        ));
    }

    #[test]
    fn a_descriptor_without_its_byte_is_malformed() {
        let (agent, child) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_with_fds(agent.as_fd(), &[0], &[file.as_fd()]).unwrap();
        assert!(matches!(
            receive(child.as_fd()),
            Err(RootMountError::Malformed { bytes: 1, fds: 1 })
        ));
    }
}
