//! The container's own session keyring, so that it does not inherit the
//! agent's (which holds what the agent's service manager or login put
//! there) and what it adds stays its own.

use nix::errno::Errno;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("join a new session keyring: {0}")]
pub struct KeyringError(Errno);

/// `KEYCTL_JOIN_SESSION_KEYRING` from `<linux/keyctl.h>`.
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

/// Creates a new anonymous session keyring and makes it this process's, as
/// runc does before the user change. The process possesses the keyring, so
/// it stays usable after the switch to a non-root user. A kernel without
/// keyrings (`ENOSYS`) has nothing to inherit either.
pub fn join_new_session() -> Result<(), KeyringError> {
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) takes no pointers
    // but the (null) name; it only changes this process's credentials.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if rc < 0 {
        let errno = Errno::last();
        if errno != Errno::ENOSYS {
            return Err(KeyringError(errno));
        }
    }
    Ok(())
}
