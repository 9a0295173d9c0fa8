//! A `kelp serve` process for end-to-end tests: started on a free loopback port, waited for
//! until it accepts connections, and killed by pid when the guard drops (also on panic).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running kelp binary.
pub struct KelpServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The kelp binary to test: `$KELP_BIN`, else the debug build in the target directory.
#[must_use]
pub fn kelp_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KELP_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    target.join("debug/kelp")
}

/// A free loopback port (bound, read, released).
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

impl KelpServer {
    /// Starts `kelp serve` with the memory store and `extra` arguments.
    #[must_use]
    pub fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("loopback address");
        let bin = kelp_bin();
        assert!(bin.exists(), "kelp binary not found at {} (build it with `cargo build -p kelp`)", bin.display());
        let child = Command::new(&bin)
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--advertised-listener",
                &addr.to_string(),
                "--storage",
                "memory",
            ])
            .args(extra)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut server = Self { child, addr };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("kelp exited early ({status}):\n{err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kelp did not accept connections on {} within 20 s", self.addr);
    }

    /// The server's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in KiB, from /proc.
    #[must_use]
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for KelpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
