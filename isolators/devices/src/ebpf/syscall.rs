//! Loading a device filter with `bpf(BPF_PROG_LOAD)` and attaching it to a
//! cgroup with `bpf(BPF_PROG_ATTACH)`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::ebpf::Insn;
use crate::DevicesError;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs may be attached to one cgroup; all must allow.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// How much of the verifier's log a failed load reports.
const LOG_SIZE: usize = 64 * 1024;

/// The head of `union bpf_attr` for `BPF_PROG_LOAD` (fields the kernel
/// knows past these are taken as zero).
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH` and `BPF_PROG_DETACH`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(command: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialized repr(C) struct of the size
    // passed; the kernel reads (and for logs, writes through pointers held
    // in) it only for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program; the fd keeps it alive.
pub fn load(insns: &[Insn]) -> Result<OwnedFd, DevicesError> {
    let license = CString::new("Apache-2.0").expect("no NUL");
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"berth_device");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new fd we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(source) => {
            // Load again with the verifier's log, for the error only.
            let mut log = vec![0u8; LOG_SIZE];
            attr.log_level = 1;
            attr.log_size = LOG_SIZE as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr).map(|fd| {
                // SAFETY: as above; closed at once.
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) })
            });
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(DevicesError::Load {
                source,
                log: String::from_utf8_lossy(&log[..end]).trim().to_string(),
            })
        }
    }
}

fn open_cgroup(dir: &Path) -> Result<File, DevicesError> {
    File::open(dir).map_err(|source| DevicesError::OpenCgroup {
        path: dir.to_path_buf(),
        source,
    })
}

fn attach_attr(cgroup: &File, program: &OwnedFd) -> AttachAttr {
    AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    }
}

/// Attaches `program` to the cgroup directory `dir` (as a device filter,
/// next to any others). The cgroup holds it from then on: it stays attached
/// when the fd is closed, and goes when the cgroup is removed.
pub fn attach(dir: &Path, program: &OwnedFd) -> Result<(), DevicesError> {
    let cgroup = open_cgroup(dir)?;
    bpf(BPF_PROG_ATTACH, &mut attach_attr(&cgroup, program))
        .map(drop)
        .map_err(|source| DevicesError::Attach {
            path: dir.to_path_buf(),
            source,
        })
}

/// Detaches `program` from the cgroup directory `dir`.
pub fn detach(dir: &Path, program: &OwnedFd) -> Result<(), DevicesError> {
    let cgroup = open_cgroup(dir)?;
    let mut attr = attach_attr(&cgroup, program);
    attr.attach_flags = 0;
    bpf(BPF_PROG_DETACH, &mut attr)
        .map(drop)
        .map_err(|source| DevicesError::Attach {
            path: dir.to_path_buf(),
            source,
        })
}
