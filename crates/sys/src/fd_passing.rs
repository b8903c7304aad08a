//! Passing open descriptors over a unix socket (`SCM_RIGHTS`): the agent
//! hands an idle shim its container's prepared mounts this way
//! (decision 0043).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// At most this many descriptors travel with one message.
pub const MAX_FDS: usize = 64;

/// Room for [`MAX_FDS`] descriptors in a control message, aligned for
/// `cmsghdr`.
#[repr(C)]
struct ControlBuffer {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; 512],
}

fn control_len(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE((fds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends `bytes` (all of them) on the stream socket `socket`, the
/// descriptors `fds` attached to the first byte. The receiver gets copies;
/// the caller's stay open.
pub fn send_with_fds(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} descriptors, at most {MAX_FDS}", fds.len()),
        ));
    }
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nothing to send",
        ));
    }
    let mut control = ControlBuffer {
        _align: [],
        bytes: [0; 512],
    };
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        let mut iov = libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        };
        // SAFETY: an all-zero msghdr is a valid "no name, no control" header.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        if sent == 0 && !fds.is_empty() {
            let len = control_len(fds.len());
            header.msg_control = control.bytes.as_mut_ptr() as *mut libc::c_void;
            header.msg_controllen = len as _;
            // SAFETY: msg_control points at `len` (≤ 512) aligned bytes we own,
            // so CMSG_FIRSTHDR is non-null and CMSG_DATA has room for
            // `fds.len()` descriptors (CMSG_SPACE above counted them).
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&header);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len =
                    libc::CMSG_LEN((fds.len() * std::mem::size_of::<RawFd>()) as u32) as _;
                let data = libc::CMSG_DATA(cmsg) as *mut RawFd;
                for (i, fd) in fds.iter().enumerate() {
                    std::ptr::write_unaligned(data.add(i), fd.as_raw_fd());
                }
            }
        }
        // SAFETY: `header` points at live buffers for the whole call.
        let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &header, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += n as usize;
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes from the stream socket `socket` and the
/// descriptors that came with them (close-on-exec). `Ok((0, _))` is the
/// end of the stream. A message that carried more descriptors than
/// [`MAX_FDS`] is an error (the kernel closed the excess).
pub fn recv_with_fds(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = ControlBuffer {
        _align: [],
        bytes: [0; 512],
    };
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is a valid "no name, no control" header.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.bytes.as_mut_ptr() as *mut libc::c_void;
        header.msg_controllen = control_len(MAX_FDS) as _;
        // SAFETY: `header` points at live buffers for the whole call.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut header, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut fds = Vec::new();
        // SAFETY: the kernel filled `header`'s control area; CMSG_FIRSTHDR and
        // CMSG_NXTHDR walk it within msg_controllen, and each SCM_RIGHTS
        // payload holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors now ours.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&header);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                    for i in 0..payload / std::mem::size_of::<RawFd>() {
                        fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&header, cmsg);
            }
        }
        if header.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {MAX_FDS} descriptors in one message"),
            ));
        }
        return Ok((n as usize, fds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn descriptors_arrive_as_working_copies_with_the_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"passed along").unwrap();
        send_with_fds(a.as_fd(), b"hello", &[file.as_fd()]).unwrap();
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        // The copy is close-on-exec and reads the same open file.
        // SAFETY: F_GETFD only inspects the descriptor.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        let mut copy = std::fs::File::from(fds.into_iter().next().unwrap());
        copy.rewind().unwrap();
        let mut text = String::new();
        copy.read_to_string(&mut text).unwrap();
        assert_eq!(text, "passed along");
    }

    #[test]
    fn the_end_of_the_stream_reads_as_zero_bytes_and_no_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let (n, fds) = recv_with_fds(b.as_fd(), &mut [0u8; 8]).unwrap();
        assert_eq!((n, fds.len()), (0, 0));
    }

    #[test]
    fn too_many_descriptors_are_refused_before_sending() {
        let (a, _b) = UnixStream::pair().unwrap();
        let many: Vec<BorrowedFd<'_>> = (0..=MAX_FDS).map(|_| a.as_fd()).collect();
        let e = send_with_fds(a.as_fd(), b"x", &many).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_message_without_descriptors_is_plain_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        send_with_fds(a.as_fd(), b"plain", &[]).unwrap();
        let mut buf = [0u8; 8];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"plain"[..], 0));
    }
}
