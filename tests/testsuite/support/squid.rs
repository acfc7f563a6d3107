//! Debian's squid on a loopback port, started by the test that needs it:
//! the site proxy CernVM-FS clients are deployed behind.
//!
//! It runs in the foreground (`-N`) with its own config, logs
//! (`work/access.log`, `work/cache.log`) and a memory-only cache, so it
//! touches nothing of the host's squid, and stops when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Squid {
    child: Child,
    pub port: u16,
    work: PathBuf,
}

/// Where squid sends what it does not have.
pub enum Upstream {
    /// A forward proxy: to the host the request names.
    Direct,
    /// Every request to the origin server on this loopback port (for a
    /// guest whose server address means nothing on the host); what it
    /// caches stays fresh for a day.
    Parent(u16),
}

impl Squid {
    pub fn start(work: &Path, upstream: Upstream) -> Squid {
        let port = super::rpmrepo::free_port();
        std::fs::create_dir_all(work).unwrap();
        let w = work.display();
        let upstream = match upstream {
            Upstream::Direct => String::new(),
            Upstream::Parent(p) => format!(
                "cache_peer 127.0.0.1 parent {p} 0 no-query originserver name=s0\n\
                 never_direct allow all\nrefresh_pattern . 1440 100% 4320\n"
            ),
        };
        let conf = format!(
            "http_port 127.0.0.1:{port}\npid_filename none\ncache_effective_user proxy\n\
             cache_log {w}/cache.log\naccess_log stdio:{w}/access.log\ncache_mem 64 MB\n\
             maximum_object_size_in_memory 32 MB\nmaximum_object_size 64 MB\n{upstream}\
             http_access allow localhost\nhttp_access deny all\nshutdown_lifetime 0 seconds\n\
             coredump_dir {w}\nnetdb_filename none\npinger_enable off\n"
        );
        std::fs::write(work.join("squid.conf"), conf).unwrap();
        let chown = Command::new("chown")
            .args(["-R", "proxy"])
            .arg(work)
            .status()
            .unwrap();
        assert!(chown.success(), "chown -R proxy {w}");
        let child = Command::new("squid")
            .arg("-N")
            .arg("-f")
            .arg(work.join("squid.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("stderr.log")).unwrap())
            .spawn()
            .expect("squid is needed (Debian's squid): bash .ci/deps");
        let s = Squid {
            child,
            port,
            work: work.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "squid did not start on port {port}:\n{}{}",
                s.log("stderr.log"),
                s.log("cache.log")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// One of its logs (`access.log`, `cache.log`), empty if absent.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.join(name)).unwrap_or_default()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to the child we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
