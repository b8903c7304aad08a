//! `Type=notify` (issue 16): the agent tells systemd `READY=1` once its API
//! socket answers, and `STOPPING=1` when it shuts down; the runtime dir it
//! creates has the mode `packaging/berth.tmpfiles` gives `/run/berth`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use common::Agent;

#[test]
fn ready_once_the_socket_answers_and_stopping_at_shutdown() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Waiting from before the agent starts, so nothing sent is missed.
    let listener = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).expect("READY within 30 s");
        (String::from_utf8_lossy(&buf[..n]).into_owned(), notify)
    });
    let mut agent = Agent::start_with_env(&[("NOTIFY_SOCKET", notify_path.to_str().unwrap())], "");
    let (ready, notify) = listener.join().unwrap();
    assert_eq!(ready, "READY=1");
    assert!(UnixStream::connect(&agent.socket).is_ok());
    assert_eq!(agent.api("GET", "/v1/containers", None).status, 200);

    // The runtime dir the agent made: 0711, as tmpfiles makes /run/berth.
    let mode = std::fs::metadata(&agent.runtime_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o711, "{mode:o}");

    let status = agent.stop_agent();
    assert!(status.success(), "{status}");
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("STOPPING within 30 s");
    assert_eq!(&buf[..n], b"STOPPING=1");
}
