//! Attaching a file to a loop device with the kernel's ioctls (as
//! `losetup --find --show` does, without the race-prone shell round trip).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::DiskError;

/// The loop control device.
pub const LOOP_CONTROL: &str = "/dev/loop-control";

// <linux/loop.h>
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// The device detaches itself when its last user (the mount) closes it.
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;
const LOOP_MAJOR: u64 = 7;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LoopInfo64 {
    /// Set by the kernel.
    pub lo_device: u64,
    /// Set by the kernel.
    pub lo_inode: u64,
    /// Set by the kernel.
    pub lo_rdevice: u64,
    /// Where the device starts in the file.
    pub lo_offset: u64,
    /// The device's size limit (0: the file's size).
    pub lo_sizelimit: u64,
    /// Set by the kernel.
    pub lo_number: u32,
    /// Obsolete.
    pub lo_encrypt_type: u32,
    /// Obsolete.
    pub lo_encrypt_key_size: u32,
    /// `LO_FLAGS_*`.
    pub lo_flags: u32,
    /// The backing file's name, for people (`losetup -l`).
    pub lo_file_name: [u8; LO_NAME_SIZE],
    /// Obsolete.
    pub lo_crypt_name: [u8; LO_NAME_SIZE],
    /// Obsolete.
    pub lo_encrypt_key: [u8; LO_KEY_SIZE],
    /// Obsolete.
    pub lo_init: [u64; 2],
}

/// `struct loop_config`, the argument of `LOOP_CONFIGURE` (Linux >= 5.8):
/// the file and its settings in one ioctl, so no half-set device is ever
/// visible.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LoopConfig {
    /// The backing file's descriptor.
    pub fd: u32,
    /// The logical block size (0: default 512).
    pub block_size: u32,
    /// The device settings.
    pub info: LoopInfo64,
    reserved: [u64; 8],
}

impl LoopConfig {
    /// The configuration berth uses: the whole file, autoclear set.
    pub fn autoclear(fd: u32, file_name: &Path) -> LoopConfig {
        let mut name = [0u8; LO_NAME_SIZE];
        let bytes = file_name.as_os_str().as_encoded_bytes();
        // Truncated like losetup does; the kernel only shows it.
        let len = bytes.len().min(LO_NAME_SIZE - 1);
        name[..len].copy_from_slice(&bytes[..len]);
        LoopConfig {
            fd,
            block_size: 0,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: LO_FLAGS_AUTOCLEAR,
                lo_file_name: name,
                lo_crypt_name: [0; LO_NAME_SIZE],
                lo_encrypt_key: [0; LO_KEY_SIZE],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        }
    }
}

/// An attached loop device, open. With autoclear, closing it (dropping
/// this) detaches it unless something (a mount) still uses it.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    /// Held open until the mount holds the device: closing the last fd of
    /// an unused autoclear device detaches it.
    _open: File,
}

impl LoopDevice {
    /// Attaches `image` to a free loop device with autoclear set.
    pub fn attach(image: &Path) -> Result<LoopDevice, DiskError> {
        let backing = OpenOptions::new()
            .read(true)
            .write(true)
            .open(image)
            .map_err(|e| DiskError::io("open", image, e))?;
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open(LOOP_CONTROL)
            .map_err(|e| DiskError::io("open", LOOP_CONTROL, e))?;
        let loop_err = |device: &Path, op, source| DiskError::Loop {
            device: device.display().to_string(),
            op,
            source,
        };
        let config = LoopConfig::autoclear(backing.as_raw_fd() as u32, image);
        // Another process may take the free device between GET_FREE and
        // CONFIGURE (EBUSY): ask again.
        let mut last = None;
        for _ in 0..16 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
            let number = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
            if number < 0 {
                return Err(loop_err(
                    Path::new(LOOP_CONTROL),
                    "LOOP_CTL_GET_FREE",
                    io::Error::last_os_error(),
                ));
            }
            let path = PathBuf::from(format!("/dev/loop{number}"));
            let file = open_device(&path, number as u32)?;
            // SAFETY: config is a valid loop_config that outlives the call.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), LOOP_CONFIGURE as _, &config) };
            if rc == 0 {
                return Ok(LoopDevice { path, _open: file });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) {
                return Err(loop_err(&path, "LOOP_CONFIGURE", e));
            }
            last = Some((path, e));
        }
        let (path, e) = last.expect("at least one attempt");
        Err(loop_err(&path, "LOOP_CONFIGURE", e))
    }

    /// The device node, `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens `/dev/loopN`, making the node when `/dev` is not a devtmpfs that
/// made it when the kernel added the device.
fn open_device(path: &Path, number: u32) -> Result<File, DiskError> {
    let open = || OpenOptions::new().read(true).write(true).open(path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dev = nix::sys::stat::makedev(LOOP_MAJOR, u64::from(number));
            nix::sys::stat::mknod(
                path,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o660),
                dev,
            )
            .map_err(|e| DiskError::io("mknod", path, e.into()))?;
            open().map_err(|e| DiskError::io("open", path, e))
        }
        other => other.map_err(|e| DiskError::io("open", path, e)),
    }
}

/// Detaches an open loop device now (`LOOP_CLR_FD`); with autoclear set
/// and the device in use, the kernel does it when its last user goes.
pub fn clear(device: &File) {
    // SAFETY: LOOP_CLR_FD takes no argument; EBUSY is expected while the
    // device is mounted and harmless.
    unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD as _, 0) };
}

/// The loop devices whose backing file is `image` (from
/// `/sys/block/loop*/loop/backing_file`).
pub fn devices_backed_by(image: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let image = image.as_os_str().as_encoded_bytes();
    entries
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(b"loop"))
        .filter(|e| {
            std::fs::read(e.path().join("loop/backing_file")).is_ok_and(|text| {
                // A deleted file shows as "<path> (deleted)".
                let text = text.strip_suffix(b"\n").unwrap_or(&text);
                text == image || text.strip_prefix(image) == Some(b" (deleted)".as_slice())
            })
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_have_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn config_sets_autoclear_and_a_truncated_name() {
        let long = format!("/{}", "x".repeat(100));
        let config = LoopConfig::autoclear(7, Path::new(&long));
        assert_eq!(config.fd, 7);
        assert_eq!(config.info.lo_flags, LO_FLAGS_AUTOCLEAR);
        assert_eq!(config.info.lo_file_name[0], b'/');
        assert_eq!(config.info.lo_file_name[62], b'x');
        assert_eq!(config.info.lo_file_name[63], 0);
    }

    #[test]
    fn autoclear_detaches_when_closed() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !Path::new(LOOP_CONTROL).exists() {
            berth_cgroups::testing::skip(
                "loop_device::autoclear_detaches_when_closed",
                "needs root and loop devices",
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("test.img");
        File::create(&image).unwrap().set_len(1 << 20).unwrap();
        let device = LoopDevice::attach(&image).unwrap();
        assert!(device.path().to_str().unwrap().starts_with("/dev/loop"));
        assert_eq!(devices_backed_by(&image), vec![device.path().to_path_buf()]);
        drop(device);
        // The kernel clears it on the last close, possibly a moment later.
        for _ in 0..100 {
            if devices_backed_by(&image).is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("loop device still attached to {}", image.display());
    }
}
