//! The exec helper's copy loop when a client is attached (`-i`, `-t`,
//! decision 0026): the command's output (its pipes, or its pty's master)
//! goes to the output files as without a client AND as frames to the
//! agent's socket; frames from the agent feed the command's stdin (a pipe,
//! or the master) and resize the pty.
//!
//! Single-threaded and poll-driven; the agent's socket is read without
//! blocking, written blocking (the agent reads and writes in separate
//! tasks, so it always drains). Input waiting for a slow reader is kept
//! here and the socket is not read meanwhile, so the command's output is
//! always copied, whatever the size of its input.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::exec_output::CappedOutput;
use berth_protocol::streams::{frames, Resize, CLOSE, RESIZE, STDERR, STDIN, STDOUT};

/// Where the command's output comes from.
pub enum Output {
    /// stdout and stderr pipes.
    Pipes([OwnedFd; 2]),
    /// The pty's master: output and input both.
    Pty(OwnedFd),
}

fn nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
    }
}

/// Copies until the joiner has ended and the output is drained.
pub fn pump(
    output: Output,
    stdin: Option<OwnedFd>,
    stream: Option<UnixStream>,
    files: &mut [CappedOutput; 2],
    joiner: Option<&OwnedFd>,
) {
    let (mut sources, mut master): (Vec<(OwnedFd, usize, u8)>, Option<OwnedFd>) = match output {
        Output::Pipes([out, err]) => (vec![(out, 0, STDOUT), (err, 1, STDERR)], None),
        Output::Pty(master) => {
            let copy = master.try_clone().ok();
            (vec![(master, 0, STDOUT)], copy)
        }
    };
    for (fd, _, _) in &sources {
        nonblocking(fd.as_fd());
    }
    // The input's target: the stdin pipe, or (with -i) the master.
    let mut input: Option<OwnedFd> = stdin.or_else(|| None);
    if let Some(fd) = &input {
        nonblocking(fd.as_fd());
    }
    let mut stream = stream;
    let mut decoder = frames::Decoder::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut close_after_pending = false;
    let mut joiner_gone = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut tty_input = master.is_some();
    loop {
        if sources.is_empty() {
            return;
        }
        if close_after_pending && pending.is_empty() {
            input = None;
            close_after_pending = false;
        }
        let mut fds: Vec<PollFd> = sources
            .iter()
            .map(|(fd, _, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let n_sources = fds.len();
        let stream_slot = match &stream {
            Some(s) if pending.is_empty() => {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let target = if tty_input {
            master.as_ref()
        } else {
            input.as_ref()
        };
        let input_slot = match target {
            Some(fd) if !pending.is_empty() => {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let joiner_slot = match joiner {
            Some(j) if !joiner_gone => {
                fds.push(PollFd::new(j.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        let ready = |slot: Option<usize>| {
            slot.and_then(|i| fds[i].revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (stream_ready, input_ready) = (ready(stream_slot), ready(input_slot));
        if ready(joiner_slot) {
            joiner_gone = true;
        }
        let _ = n_sources;
        drop(fds);

        // Output: to the file and to the client.
        let mut closed = Vec::new();
        for (index, (fd, file, channel)) in sources.iter().enumerate() {
            loop {
                match nix::unistd::read(fd, &mut buf) {
                    Ok(0) => {
                        closed.push(index);
                        break;
                    }
                    Ok(n) => {
                        files[*file].write(&buf[..n]);
                        if let Some(s) = &mut stream {
                            if frames::write(s, *channel, &buf[..n]).is_err() {
                                stream = None;
                            }
                        }
                    }
                    Err(Errno::EINTR) => {}
                    // A master reads EIO once no slave is open.
                    Err(Errno::EAGAIN) if !joiner_gone => break,
                    Err(_) => {
                        if joiner_gone || channel == &STDOUT && master.is_some() {
                            closed.push(index);
                        }
                        break;
                    }
                }
            }
        }
        for index in closed.into_iter().rev() {
            sources.remove(index);
        }

        // Input from the client.
        if stream_ready {
            let s = stream.as_ref().expect("polled");
            // SAFETY: recv into a buffer of its length.
            let n = unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => {
                    // The client went away: stdin ends, a tty hangs up.
                    stream = None;
                    input = None;
                    if tty_input {
                        master = None;
                        tty_input = false;
                        sources.clear();
                    }
                }
                n if n > 0 => {
                    decoder.push(&buf[..n as usize]);
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(frame)) => match frame.channel {
                                STDIN if input.is_some() || tty_input => {
                                    pending.extend_from_slice(&frame.payload)
                                }
                                RESIZE => {
                                    if let (Some(m), Ok(size)) =
                                        (&master, serde_json::from_slice::<Resize>(&frame.payload))
                                    {
                                        let _ = super::pty::set_size(m.as_fd(), size);
                                    }
                                }
                                CLOSE if frame.payload.first() == Some(&STDIN) => {
                                    close_after_pending = true
                                }
                                _ => {}
                            },
                            Ok(None) => break,
                            Err(_) => {
                                stream = None;
                                break;
                            }
                        }
                    }
                }
                _ => {
                    let errno = Errno::last();
                    if errno != Errno::EAGAIN && errno != Errno::EINTR {
                        stream = None;
                        input = None;
                    }
                }
            }
        }
        if input_ready || !pending.is_empty() {
            let target = if tty_input {
                master.as_ref()
            } else {
                input.as_ref()
            };
            match target {
                Some(fd) => match nix::unistd::write(fd, &pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                    Err(_) => {
                        // The reader is gone: its input is dropped.
                        pending.clear();
                        input = None;
                    }
                },
                None => pending.clear(),
            }
        }
    }
}
