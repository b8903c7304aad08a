//! A pty for a process in a container (`-t`, decision 0026): opened INSIDE
//! the container's mount namespace, from its own `devpts` instance
//! (`newinstance`, `/dev/ptmx` -> `pts/ptmx`), so the host's ptys are never
//! reachable from it; the slave becomes the process's controlling terminal
//! and the master is passed to the helper outside over `SCM_RIGHTS`.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use berth_protocol::streams::Resize;

/// Opens a pty pair from the `/dev/ptmx` of the current mount namespace:
/// (master, slave), both close-on-exec and not yet anyone's terminal.
pub fn open() -> Result<(OwnedFd, OwnedFd), Errno> {
    // SAFETY: a NUL-terminated literal path; the result is checked.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let master = Errno::result(master)?;
    // SAFETY: a fresh fd owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int that outlives the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    // The slave of this very master, without a path lookup: no race with
    // anything renaming /dev/pts entries.
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = Errno::result(slave)?;
    // SAFETY: a fresh fd owned by nobody else.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Makes `slave` the controlling terminal of the calling process, which
/// must lead a session without one (right after `setsid`).
pub fn make_controlling(slave: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY with an integer argument.
    Errno::result(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}

/// Sets the window size on `master` (the process gets SIGWINCH).
pub fn set_size(master: BorrowedFd<'_>, size: Resize) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that outlives the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// Sends `fd` over the unix socket `socket` (`SCM_RIGHTS`, one byte of data).
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    with_fd_message(|msg| {
        // SAFETY: msg points at a control buffer of CMSG_SPACE(sizeof fd)
        // bytes, so the first header and its data fit in it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        }
        loop {
            // SAFETY: msg and the buffers it points to live across the call.
            match Errno::result(unsafe { libc::sendmsg(socket.as_raw_fd(), msg, 0) }) {
                Err(Errno::EINTR) => continue,
                other => return other.map(drop),
            }
        }
    })
}

/// Calls `f` with a message of one data byte and room for one fd's
/// control header: the shape [`send_fd`] sends and [`recv_fd`] receives.
fn with_fd_message<R>(f: impl FnOnce(&mut libc::msghdr) -> R) -> R {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    f(&mut msg)
}

/// Receives one fd sent by [`send_fd`]; `Ok(None)` when the peer closed
/// the socket without sending one. The fd is made close-on-exec.
pub fn recv_fd(socket: BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno> {
    with_fd_message(|msg| {
        let n = loop {
            // SAFETY: msg and the buffers it points to live across the call.
            match Errno::result(unsafe {
                libc::recvmsg(socket.as_raw_fd(), msg, libc::MSG_CMSG_CLOEXEC)
            }) {
                Err(Errno::EINTR) => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG
        // macros walk only within it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(msg);
            if cmsg.is_null()
                || (*cmsg).cmsg_level != libc::SOL_SOCKET
                || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            {
                return Ok(None);
            }
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
            Ok(Some(OwnedFd::from_raw_fd(fd)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_fd_crosses_a_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        send_fd(a.as_fd(), file.as_fd()).unwrap();
        let got = recv_fd(b.as_fd()).unwrap().expect("an fd");
        let path = std::fs::read_link(format!("/proc/self/fd/{}", got.as_raw_fd())).unwrap();
        assert!(path.ends_with("status"), "{path:?}");
        drop(a);
        assert!(recv_fd(b.as_fd()).unwrap().is_none());
    }
}
