//! A `kelp serve` process for end-to-end tests: started on a free loopback port, waited for
//! until it accepts connections, and killed by pid when the guard drops (also on panic).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running kelp binary.
pub struct KelpServer {
    child: Child,
    log: PathBuf,
    data_dir: PathBuf,
    keep_data: bool,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The kelp binary to test: `$KELP_BIN`, else the debug build next to this test binary or in
/// the target directory.
#[must_use]
pub fn kelp_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KELP_BIN") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug/kelp"));
    }
    // A test binary lives in <target>/<profile>/deps/.
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| Some(e.parent()?.parent()?.to_path_buf())) {
        candidates.push(dir.join("kelp"));
    }
    candidates.push(crate::clients::workspace_root().join("target/debug/kelp"));
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        panic!(
            "kelp binary not found (looked at {}); build it with `cargo build -p kelp` or set KELP_BIN",
            looked.join(", ")
        )
    })
}

/// A free loopback port (bound, read, released).
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

impl KelpServer {
    /// Starts `kelp serve` on the disk store in `dir` (kept when the server stops, so a test
    /// can restart over it), with `extra` arguments.
    #[must_use]
    pub fn start_on_disk(dir: &std::path::Path, extra: &[&str]) -> Self {
        let dir = dir.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec!["--storage", "disk", "--data-dir", &dir];
        args.extend_from_slice(extra);
        let mut server = Self::start(&args);
        server.keep_data = true;
        server
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the server to stop as a service manager would (SIGTERM, by its pid) and waits up
    /// to `limit` for it to exit: its exit status, or `None` when it was still running (it is
    /// then killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        // std has no way to send SIGTERM: kill(1) with this one pid.
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM {} failed", self.pid());
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// Starts `kelp serve` with `extra` arguments, on the memory store unless `extra` or
    /// `KELP_E2E_STORAGE` says otherwise (kelp's own default is the disk store).
    #[must_use]
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// Starts `kelp serve` with `extra` arguments and `env` environment variables. The admin
    /// endpoint and the schema registry are off unless `extra` sets `--admin-listen` or
    /// `--schema-registry-listen` (tests run servers side by side).
    #[must_use]
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        // A port found free can be taken before kelp binds it: try a few.
        for attempt in 1..=3 {
            let mut server = Self::spawn(extra, env);
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) if attempt < 3 && log.contains("in use") => {}
                Err(log) => panic!("kelp serve on {} did not come up:\n{log}", server.addr),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_at(free_port(), extra, env)
    }

    /// Starts `kelp serve` on the disk store in `dir` listening on `port` (a restart where
    /// clients still know the old address), with `extra` arguments.
    #[must_use]
    pub fn start_on_disk_at(dir: &std::path::Path, port: u16, extra: &[&str]) -> Self {
        let dir = dir.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec!["--storage", "disk", "--data-dir", &dir];
        args.extend_from_slice(extra);
        Self::start_at(port, &args)
    }

    /// Starts `kelp serve` with `extra` arguments listening on `port` (a restart where clients
    /// still know the old address); its data directory is kept when it stops.
    #[must_use]
    pub fn start_at(port: u16, extra: &[&str]) -> Self {
        let mut server = Self::spawn_at(port, extra, &[]);
        server.keep_data = true;
        if let Err(log) = server.wait_ready() {
            panic!("kelp serve on {} did not come up again:\n{log}", server.addr);
        }
        server
    }

    fn spawn_at(port: u16, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("loopback address");
        let bin = kelp_bin();
        // The server's log goes to a file: a pipe nobody reads could fill and stall it.
        // One log per server, also for a server restarted on its predecessor's port (whose
        // drop, which removes its log, may come after this one started).
        static SPAWNED: AtomicU32 = AtomicU32::new(0);
        let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("kelp-e2e-{}-{port}-{n}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        // KELP_E2E_STORAGE=disk runs the suite on the disk store, in a fresh data directory.
        let storage = std::env::var("KELP_E2E_STORAGE").unwrap_or_else(|_| "memory".into());
        let data_dir = std::env::temp_dir().join(format!("kelp-e2e-data-{}-{port}", std::process::id()));
        let mut cmd = Command::new(&bin);
        cmd.args(["serve", "--listen", &addr.to_string(), "--advertised-listener", &addr.to_string()]);
        // Always an explicit storage and data directory: kelp's defaults (the disk store in
        // ./kelp-data) would write into the working directory.
        if !extra.contains(&"--storage") {
            cmd.args(["--storage", &storage]);
            if storage == "seaweedmq" {
                // KELP_E2E_STORAGE=seaweedmq (with KELP_SEAWEEDMQ_MASTER): each server its own
                // namespace, so tests sharing one cluster do not see each other's topics.
                cmd.args(["--seaweedmq-namespace", &format!("e2e{}x{port}", std::process::id())]);
            }
        }
        if !extra.contains(&"--data-dir") {
            cmd.arg("--data-dir").arg(&data_dir);
        }
        if !extra.contains(&"--admin-listen") && !env.iter().any(|(k, _)| *k == "KELP_ADMIN_LISTEN") {
            cmd.args(["--admin-listen", "off"]);
        }
        if !extra.contains(&"--schema-registry-listen") && !env.iter().any(|(k, _)| *k == "KELP_SCHEMA_REGISTRY_LISTEN")
        {
            cmd.args(["--schema-registry-listen", "off"]);
        }
        cmd.envs(env.iter().copied());
        let child = cmd
            .args(extra)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Self { child, log, data_dir, keep_data: false, addr }
    }

    /// Waits until the port accepts a connection; the server's log if it exits or never does.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("kelp exited ({status}); its log:\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no connection accepted within 20 s; its log:\n{}", self.log_tail()))
    }

    /// The last lines of the server's log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
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

    /// Sends `signal` (a name kill(1) knows: TERM, INT, KILL) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running kill: {e}"));
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the server to exit (killing it if it has not after `limit`) and returns its
    /// exit code (`None` when a signal ended it).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    self.kill();
                    panic!("kelp did not exit within {limit:?}; its log:\n{}", self.log_tail());
                }
            }
        }
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
        if std::thread::panicking() {
            eprintln!("kelp log ({}):\n{}", self.log.display(), self.log_tail());
        }
        let _ = std::fs::remove_file(&self.log);
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
