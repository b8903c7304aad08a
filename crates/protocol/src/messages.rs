//! What the agent and `berth-shim` say to each other.
//!
//! The agent execs `berth-shim` with its [`crate::ShimArgs`] and fd
//! [`SYNC_FD`] one end of a unix stream socket. The shim forks and its
//! first process exits at once, so the supervisor is no child of the agent
//! and outlives it. Then, over fd 3, one JSON object a line
//! ([`ShimMessage::to_line`], [`ShimMessage::parse_line`]):
//!
//! 0. shim → agent [`ShimMessage::Forked`] once the container process exists,
//!    while it still sets itself up: the agent isolates it meanwhile. With
//!    `--cgroup` (decision 0047) the process moves itself into those
//!    cgroups once the agent writes a byte to the `--cgroups-ready-fd`
//!    pipe, before it confines itself and reports ready.
//! 1. shim → agent [`ShimMessage::Ready`] once the container process is set up
//!    (namespaces, mounts, user) and waits to exec; or [`ShimMessage::Failed`].
//! 2. agent → shim the line [`GO`] once the isolators placed `pid`, before or
//!    after `Ready`: a shim that holds the container's mount namespace from
//!    the clone (a new one, no new user namespace: decision 0058) passes it
//!    on to the container process at once, which takes it once it is set
//!    up; another shim holds it until the container is ready. If the socket
//!    closes instead, the shim kills the container and records a launch
//!    failure.
//! 3. shim → agent [`ShimMessage::Running`] once the command was exec'd, or
//!    [`ShimMessage::Failed`] (for example an unknown executable). A
//!    container with its own mount namespace has it attached to `Running`
//!    (`SCM_RIGHTS`, one nsfs descriptor): the agent holds it until it has
//!    told the end, so that the namespace's teardown is not on the exit's
//!    path (decision 0048). The agent reads with `recvmsg` to keep it; an
//!    agent or a shim without it works as before.
//! 4. When the container has ended and its output is drained, the shim
//!    writes [`crate::ExitRecord`] to `<state-dir>/exit.json`, sends
//!    [`ShimMessage::Exited`] with the same record on fd 3, kept open since
//!    `Running`, and exits. The agent also watches the shim's pid (a pidfd): the message
//!    tells the end before the shim's process is torn down (decision
//!    0052), the pidfd covers a shim that died without it and an agent
//!    restarted since the launch, which has no socket to the shim.

use serde::{Deserialize, Serialize};

/// The agent's go-ahead line.
pub const GO: &str = "go";

/// The file in the state dir where the shim logs its own trouble.
pub const SHIM_LOG_FILE: &str = "shim.log";

/// The most of an exec's stdout, and of its stderr, kept in its exec dir:
/// the exec helper writes no more, the agent reads no more.
pub const EXEC_OUTPUT_CAP: u64 = 4 << 20;

/// The fd on which the shim finds its socket to the agent.
pub const SYNC_FD: i32 = 3;

/// Why a launch failed, as far as whose fault it is: the agent answers
/// the caller's mistakes with a 400 naming the field, the rest with a 500.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The command could not be executed (not found, not executable): the
    /// caller's `command`.
    Exec,
    /// The working directory could not be entered: the caller's `workdir`.
    Workdir,
    /// A mount target leads out of the container root through the image's
    /// symlinks: the caller's `mounts`.
    MountEscape,
    /// Anything else: berth's or the host's trouble.
    #[default]
    Setup,
}

impl FailureKind {
    /// Whether the caller, not berth, caused it.
    pub fn is_user_error(self) -> bool {
        !matches!(self, FailureKind::Setup)
    }
}

/// A message from the shim to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShimMessage {
    /// The container process exists and waits for [`GO`].
    Ready {
        /// The supervisor's pid.
        shim_pid: u32,
        /// The container's first process, as the host sees it.
        pid: u32,
    },
    /// The command was exec'd; the container's mount namespace may be
    /// attached (see the module's protocol, step 3).
    Running,
    /// The launch failed; the shim cleans up and exits.
    Failed {
        message: String,
        /// Absent from a shim older than the kind: [`FailureKind::Setup`].
        #[serde(default)]
        kind: FailureKind,
    },
    /// The container process was forked and is still setting itself up
    /// (sent before [`ShimMessage::Ready`]): the agent isolates it (moves
    /// it into its cgroups) meanwhile, so the kernel's cgroup attach,
    /// often the slowest step of a launch, overlaps the setup (decision
    /// 0035). A shim without it sends only `Ready`.
    Forked {
        /// The supervisor's pid.
        shim_pid: u32,
        /// The container's first process, as the host sees it.
        pid: u32,
    },
    /// The container's end is in `exit.json` and all its output in its
    /// logs; the shim exits next and writes nothing more.
    Exited {
        /// What `exit.json` holds, sent along so that the agent tells the
        /// end without reading the file back (decision 0057). Absent from
        /// a shim older than the field: the file has it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit: Option<crate::ExitRecord>,
    },
    /// An idle shim (`berth-shim pool`, started ahead of any launch) has
    /// detached and waits for its handover (see [`crate::handover`]); it
    /// is sent once, before any other message.
    Idle {
        /// The supervisor's pid.
        shim_pid: u32,
    },
}

impl ShimMessage {
    /// The message as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        // Serializing a plain enum of strings and numbers cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Reads back a line from [`ShimMessage::to_line`] (trailing newline
    /// optional).
    pub fn parse_line(line: &str) -> Result<ShimMessage, serde_json::Error> {
        serde_json::from_str(line.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exited_line_without_its_record_is_read() {
        // As a shim older than the record in the message says it.
        assert_eq!(
            ShimMessage::parse_line("{\"type\":\"exited\"}\n").unwrap(),
            ShimMessage::Exited { exit: None }
        );
    }

    #[test]
    fn messages_round_trip_as_lines() {
        for message in [
            ShimMessage::Idle { shim_pid: 7 },
            ShimMessage::Forked {
                shim_pid: 10,
                pid: 11,
            },
            ShimMessage::Ready {
                shim_pid: 10,
                pid: 11,
            },
            ShimMessage::Running,
            ShimMessage::Exited { exit: None },
            ShimMessage::Exited {
                exit: Some(crate::ExitRecord {
                    exit_code: Some(3),
                    signal: None,
                    started_at: Some("2026-12-06T10:00:00.000000001Z".into()),
                    finished_at: "2026-12-06T10:00:01.5Z".into(),
                    error: None,
                }),
            },
            ShimMessage::Failed {
                message: "exec \"nope\": no such file or directory".into(),
                kind: FailureKind::Exec,
            },
            ShimMessage::Failed {
                message: "chdir to /x: ENOENT\nsecond line".into(),
                kind: FailureKind::Workdir,
            },
        ] {
            let line = message.to_line();
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(line.last(), Some(&b'\n'));
            let back = ShimMessage::parse_line(std::str::from_utf8(&line).unwrap()).unwrap();
            assert_eq!(back, message);
        }
    }

    #[test]
    fn the_wire_shape_is_stable() {
        let line = ShimMessage::Failed {
            message: "m".into(),
            kind: FailureKind::MountEscape,
        }
        .to_line();
        assert_eq!(
            line,
            b"{\"type\":\"failed\",\"message\":\"m\",\"kind\":\"mount_escape\"}\n"
        );
        // A failure without a kind is berth's own.
        assert_eq!(
            ShimMessage::parse_line(r#"{"type":"failed","message":"m"}"#).unwrap(),
            ShimMessage::Failed {
                message: "m".into(),
                kind: FailureKind::Setup,
            }
        );
    }

    #[test]
    fn only_setup_is_berths_fault() {
        assert!(FailureKind::Exec.is_user_error());
        assert!(FailureKind::Workdir.is_user_error());
        assert!(FailureKind::MountEscape.is_user_error());
        assert!(!FailureKind::Setup.is_user_error());
    }
}
