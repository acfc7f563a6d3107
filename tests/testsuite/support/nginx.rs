//! nginx on a loopback port, started by the test that needs it: a real
//! Stratum-0 / Stratum-1 web server, as upstream deploys them.
//!
//! It runs in the foreground with its own prefix, pid file, logs
//! (`work/access.log`, `work/error.log`) and temp dirs under `work`, so it
//! touches nothing of the host's nginx, and stops (SIGTERM: the master
//! stops its worker too) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    pub port: u16,
    work: PathBuf,
}

impl Nginx {
    /// Serves `root` as static files.
    pub fn start(root: &Path, work: &Path) -> Nginx {
        Nginx::start_with(root, work, "")
    }

    /// Serves `root`, with `server` added to the `server` block (e.g.
    /// `dav_methods PUT;`).
    pub fn start_with(root: &Path, work: &Path, server: &str) -> Nginx {
        let port = super::rpmrepo::free_port();
        std::fs::create_dir_all(work).unwrap();
        let w = work.display();
        // `user root`: the test's temp dirs are 0700; ignored (with a
        // warning) when the test does not run as root.
        let conf = format!(
            "user root;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {w}/access.log;\n  client_body_temp_path {w}/body;\n\
               proxy_temp_path {w}/proxy;\n  fastcgi_temp_path {w}/fastcgi;\n\
               uwsgi_temp_path {w}/uwsgi;\n  scgi_temp_path {w}/scgi;\n\
               types {{ application/x-cvmfs cvmfspublished; }}\n\
               default_type application/octet-stream;\n\
               server {{ listen 127.0.0.1:{port}; root {root}; {server} }}\n}}\n",
            root = root.display()
        );
        std::fs::write(work.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(work)
            .arg("-c")
            .arg(work.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("stderr.log")).unwrap())
            .spawn()
            .expect("nginx is needed (Debian's nginx-light): bash .ci/deps");
        let n = Nginx {
            child,
            port,
            work: work.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start on port {port}:\n{}{}",
                n.log("stderr.log"),
                n.log("error.log")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    /// One of its logs (`access.log`, `error.log`), empty if absent.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.join(name)).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
