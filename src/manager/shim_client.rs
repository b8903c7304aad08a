//! The agent's side of the shim protocol (see `berth_protocol::messages`).

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_protocol::messages::{GO, SYNC_FD};
pub use berth_protocol::shim_args::FILES_FD_BASE;
use berth_protocol::{LogSettings, ShimArgs as WireArgs, ShimMessage};

use super::shim_pool::IdleShim;

/// How long a shim may take to set a container up before the launch fails.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors talking to a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("start shim {}: {source}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("shim {} exited with {status} before starting the container", path.display())]
    EarlyExit {
        path: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("shim protocol: {0}")]
    Protocol(String),
    #[error("talk to shim: {0}")]
    Io(#[from] io::Error),
}

/// What the agent passes to a shim.
pub struct ShimArgs<'a> {
    pub shim: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub state_dir: &'a Path,
    pub log_dir: &'a Path,
    /// Rotation and backpressure, passed on the command line so that nothing
    /// the container can write decides them.
    pub log: &'a LogSettings,
    /// Prepared mounts (secrets, config files) the container child attaches
    /// at these destinations: passed as descriptors from
    /// [`FILES_FD_BASE`] on, named by `--files-fd DEST=FD`.
    pub files: &'a [(PathBuf, OwnedFd)],
}

/// At most this many prepared mounts (their descriptors are copied above
/// the range they end up in, so the copies never collide with it).
const MAX_FILES: usize = 64;

/// Where the agent's copies of [`ShimArgs::files`] start (above any
/// target number).
const FILES_FD_COPIES: i32 = FILES_FD_BASE + MAX_FILES as i32;

/// An open conversation with a shim that is launching a container.
pub struct ShimConnection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ShimConnection {
    /// Hands the launch to an idle shim from the pool (decision 0043): the
    /// same arguments a started shim reads from its command line, the
    /// prepared mounts' descriptors passed along. An error means this
    /// shim cannot take it (it died idle): the caller starts one instead.
    pub fn hand_over(idle: IdleShim, args: &ShimArgs<'_>) -> Result<ShimConnection, ShimError> {
        let wire = wire_args(args)?;
        let files: Vec<BorrowedFd<'_>> = args.files.iter().map(|(_, fd)| fd.as_fd()).collect();
        berth_protocol::handover::send(idle.writer.as_fd(), &wire, &files)
            .map_err(|e| ShimError::Protocol(e.to_string()))?;
        idle.writer.set_read_timeout(Some(SETUP_TIMEOUT))?;
        Ok(ShimConnection {
            reader: idle.reader,
            writer: idle.writer,
        })
    }

    /// Execs the shim, whose first process exits at once (the supervisor
    /// lives on as an orphan, not as our child), and connects to it.
    pub fn spawn(args: &ShimArgs<'_>) -> Result<ShimConnection, ShimError> {
        let (ours, theirs) = UnixStream::pair()?;
        let theirs: OwnedFd = theirs.into();
        let theirs_fd = theirs.as_raw_fd();
        let wire = wire_args(args)?;
        let mut copies: Vec<OwnedFd> = Vec::with_capacity(args.files.len());
        for (_, fd) in args.files.iter() {
            // SAFETY: F_DUPFD_CLOEXEC returns a fresh descriptor, owned below.
            let copy =
                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, FILES_FD_COPIES) };
            if copy < 0 {
                return Err(ShimError::Io(io::Error::last_os_error()));
            }
            // SAFETY: see above.
            copies.push(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(copy) });
        }
        let mut command = Command::new(args.shim);
        command
            .args(wire.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let files_fds: Vec<i32> = copies.iter().map(|fd| fd.as_raw_fd()).collect();
        // SAFETY: the closure runs between fork and exec and only calls
        // dup2 and fcntl, which are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if theirs_fd == SYNC_FD {
                    // dup2 onto itself keeps FD_CLOEXEC: clear it by hand.
                    if libc::fcntl(SYNC_FD, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(theirs_fd, SYNC_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // The copies lie above every target, so no dup2 here
                // overwrites one still to be copied; dup2 clears FD_CLOEXEC.
                for (i, &fd) in files_fds.iter().enumerate() {
                    if libc::dup2(fd, FILES_FD_BASE + i as i32) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| ShimError::Spawn {
            path: args.shim.to_path_buf(),
            source,
        })?;
        drop((theirs, copies));
        let status = child.wait()?;
        if !status.success() {
            return Err(ShimError::EarlyExit {
                path: args.shim.to_path_buf(),
                status,
            });
        }
        ours.set_read_timeout(Some(SETUP_TIMEOUT))?;
        Ok(ShimConnection {
            writer: ours.try_clone()?,
            reader: BufReader::new(ours),
        })
    }

    /// Reads the shim's next message.
    pub fn receive(&mut self) -> Result<ShimMessage, ShimError> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(ShimError::Protocol("the shim closed the connection".into())),
            Ok(_) => ShimMessage::parse_line(&line).map_err(|e| {
                ShimError::Protocol(format!("bad message {:?}: {e}", line.trim_end()))
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(ShimError::Protocol(format!(
                    "no word from the shim within {}s",
                    SETUP_TIMEOUT.as_secs()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Lets the container exec its command.
    pub fn go(&mut self) -> Result<(), ShimError> {
        self.writer.write_all(format!("{GO}\n").as_bytes())?;
        Ok(())
    }
}

/// What the shim reads: `args`, the prepared mounts named by the numbers
/// they get in the shim ([`FILES_FD_BASE`] on).
fn wire_args(args: &ShimArgs<'_>) -> Result<WireArgs, ShimError> {
    if args.files.len() > MAX_FILES {
        return Err(ShimError::Protocol(format!(
            "{} prepared mounts, at most {MAX_FILES}",
            args.files.len()
        )));
    }
    Ok(WireArgs {
        id: args.id.to_string(),
        bundle: args.bundle.to_path_buf(),
        state_dir: args.state_dir.to_path_buf(),
        log_dir: args.log_dir.to_path_buf(),
        log: args.log.clone(),
        files: (args.files.iter().enumerate())
            .map(|(i, (dest, _))| (dest.clone(), FILES_FD_BASE + i as i32))
            .collect(),
    })
}
