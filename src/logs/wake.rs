//! Waking a log follower when there may be more to read: an inotify watch
//! on the log dir (a segment written, created, renamed or compressed), so a
//! follower at the end of what is written sleeps until the shim writes
//! again instead of polling.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

/// An inotify instance watching one directory.
struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Changes in a log dir, awaited on the runtime.
pub struct DirWatch {
    /// `None` only while being dropped.
    fd: Option<AsyncFd<Watch>>,
}

impl Drop for DirWatch {
    /// Closing an inotify instance waits for an SRCU grace period in the
    /// kernel (`fsnotify_destroy_group`): 5–20 ms measured, which on a
    /// runtime worker delayed the end of every followed body (the exit
    /// frame of `berth run`) by as much. The close is done on the blocking
    /// pool instead (decision 0035).
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else {
            return;
        };
        // Deregistered from the reactor here; only the close is moved.
        let watch = fd.into_inner();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(watch));
            }
            Err(_) => drop(watch),
        }
    }
}

impl DirWatch {
    /// Watches `dir` from now on: every change after this call wakes
    /// [`DirWatch::changed`], even one made before it is awaited.
    pub fn new(dir: &Path) -> io::Result<DirWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(
            dir,
            AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CLOSE_WRITE,
        )?;
        // SAFETY: the inotify fd is owned by `Watch`, which the AsyncFd owns
        // for its whole life and which always returns that same fd.
        let fd = unsafe { AsyncFd::register(Watch(inotify)) }.map_err(|e| e.into_parts().1)?;
        Ok(DirWatch { fd: Some(fd) })
    }

    /// Resolves once something changed in the dir since the last call
    /// (all pending events are consumed: one wake-up per burst).
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let fd = self.fd.as_mut().expect("only taken by drop");
            let mut guard = fd.readable_mut().await?;
            let mut any = false;
            loop {
                match guard.get_inner().0.read_events() {
                    Ok(events) if !events.is_empty() => any = true,
                    Ok(_) => break,
                    Err(Errno::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if any {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_before_or_after_the_wait_wakes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = DirWatch::new(dir.path()).unwrap();
        std::fs::write(dir.path().join("stdout.00000000000000000000"), b"a").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("woken by the earlier write")
            .unwrap();
        // Nothing new: not woken.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), watch.changed())
                .await
                .is_err()
        );
        let path = dir.path().join("stdout.00000000000000000000");
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            std::fs::write(path, b"ab").unwrap();
        });
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("woken by the later write")
            .unwrap();
        writer.await.unwrap();
    }
}
