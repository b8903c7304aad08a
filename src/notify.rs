//! systemd's readiness protocol (`Type=notify`): datagrams such as
//! `READY=1` sent to the unix socket named by `$NOTIFY_SOCKET`, a path or,
//! with a leading `@`, an abstract name. Without the variable (not started
//! by systemd) nothing is sent.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The agent answers on its socket.
pub const READY: &str = "READY=1";
/// The agent is shutting down (its containers keep running).
pub const STOPPING: &str = "STOPPING=1";

/// Sends `state` to the service manager, if there is one.
pub fn notify(state: &str) -> io::Result<()> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let target = target.to_string_lossy().into_owned();
    let address = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(&target)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}
