//! A real one-node Slurm cluster on localhost for one test: `munged`, `slurmctld` and `slurmd`
//! started by hand (no systemd) with their configuration, state, sockets and logs in a
//! temporary directory, on free ports. Stopped on drop, so also when the test panics.
//!
//! Needs Debian's `slurm-wlm` and `munge` (scripts/setup.sh installs them) and root, since
//! slurmd starts jobs (tried as an unprivileged user: the node comes up, jobs hang in RUNNING).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SlurmCluster {
    dir: tempfile::TempDir,
    munged: Option<Child>,
    slurmctld: Option<Child>,
    slurmd: Option<Child>,
    /// From the start of munged to an idle node.
    pub started_in: Duration,
}

impl SlurmCluster {
    /// Starts the daemons and waits for the node to be idle; fails the test (it does not skip)
    /// when Slurm is missing.
    pub fn start() -> Self {
        for exe in ["munged", "slurmctld", "slurmd", "sbatch"] {
            if find(exe).is_none() {
                panic!("`{exe}` is not installed: run scripts/setup.sh (it installs Debian's slurm-wlm and munge)");
            }
        }
        // As another user, munged refuses the credentials slurmd's job steps present
        // ("Unauthorized credential") and jobs hang: say so instead of hanging.
        if whoami() != "root" {
            panic!("the Slurm tests start slurmd, which must run as root to launch jobs: run them as root (scripts/setup.sh, too, installs packages only as root)");
        }
        let dir = tempfile::Builder::new().prefix("slurm-test-").tempdir().unwrap();
        // munged wants every directory above its socket to be searchable by all.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["munge", "state", "spool", "log"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let munge = dir.path().join("munge");
        let mut key = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(fs::File::open("/dev/urandom").unwrap(), 1024), &mut key).unwrap();
        fs::write(munge.join("key"), key).unwrap();
        fs::set_permissions(munge.join("key"), fs::Permissions::from_mode(0o400)).unwrap();
        let conf = dir.path().join("slurm.conf");
        let [ctld_port, slurmd_port] = free_ports();
        fs::write(&conf, slurm_conf(dir.path(), ctld_port, slurmd_port)).unwrap();

        let mut cluster = Self { dir, munged: None, slurmctld: None, slurmd: None, started_in: Duration::ZERO };
        let started = Instant::now();
        let log = |name: &str| fs::File::create(cluster.dir.path().join("log").join(name)).unwrap();
        cluster.munged = Some(
            Command::new(find("munged").unwrap())
                .arg("-F")
                .arg(format!("--key-file={}", munge.join("key").display()))
                .arg(format!("--socket={}", munge.join("socket").display()))
                .arg(format!("--pid-file={}", munge.join("pid").display()))
                .arg(format!("--seed-file={}", munge.join("seed").display()))
                .arg(format!("--log-file={}", munge.join("log").display()))
                .stdin(Stdio::null())
                .stdout(log("munged.out"))
                .stderr(log("munged.out"))
                .spawn()
                .expect("start munged"),
        );
        wait_for(|| munge.join("socket").exists(), Duration::from_secs(10), || cluster.logs("munge socket never appeared"));
        cluster.start_slurmctld();
        cluster.start_slurmd();
        wait_for(
            || cluster.node_state().as_deref() == Some("idle"),
            Duration::from_secs(30),
            || cluster.logs("the node never became idle"),
        );
        cluster.started_in = started.elapsed();
        cluster
    }

    pub fn start_slurmd(&mut self) {
        let log = fs::File::create(self.dir.path().join("log").join("slurmd.out")).unwrap();
        self.slurmd = Some(
            Command::new(find("slurmd").unwrap())
                .args(["-D", "-N", "localhost", "-f"])
                .arg(self.conf())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start slurmd"),
        );
    }

    /// Starts the controller; it recovers queued and running jobs from its state directory.
    pub fn start_slurmctld(&mut self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("log").join("slurmctld.out")).unwrap();
        self.slurmctld = Some(
            Command::new(find("slurmctld").unwrap())
                .args(["-D", "-i", "-f"])
                .arg(self.conf())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start slurmctld"),
        );
    }

    /// Stops the controller the way a restart does (SIGTERM: it saves its state).
    pub fn stop_slurmctld(&mut self) {
        if let Some(child) = self.slurmctld.take() {
            stop(child);
        }
    }

    /// Kills slurmd with SIGKILL (running jobs' slurmstepd processes live on, as on a real node).
    pub fn kill_slurmd(&mut self) {
        if let Some(mut child) = self.slurmd.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// What a process needs to talk to this cluster.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SLURM_CONF".into(), self.conf().display().to_string())]
    }

    /// A Slurm client command (`squeue`, `scancel`, ...) for this cluster.
    pub fn command(&self, exe: &str) -> Command {
        let mut cmd = Command::new(exe);
        cmd.env("SLURM_CONF", self.conf());
        cmd
    }

    /// `sinfo`'s compact state of the node (`idle`, `alloc`, `down*`, ...).
    pub fn node_state(&self) -> Option<String> {
        let out = self.command("sinfo").args(["--noheader", "--format=%t"]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    }

    /// `JobState` of a job as `scontrol` reports it.
    pub fn job_state(&self, id: &str) -> String {
        let out = self.command("scontrol").args(["-o", "show", "job", id]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace().find_map(|kv| kv.strip_prefix("JobState=")).unwrap_or("?").to_owned()
    }

    pub fn logs(&self, what: &str) -> String {
        let mut text = format!("slurm test cluster: {what}\n");
        for name in ["munged.out", "slurmctld.out", "slurmd.out", "slurmctld.log", "slurmd.log"] {
            let body = fs::read_to_string(self.dir.path().join("log").join(name)).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(20).collect();
            text.push_str(&format!("--- {name}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        text
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        // Cancel what is left so no job outlives the cluster, then stop the daemons.
        let _ = self.command("scancel").args(["--user", &whoami()]).output();
        for child in [self.slurmd.take(), self.slurmctld.take(), self.munged.take()].into_iter().flatten() {
            stop(child);
        }
    }
}

/// SIGTERM, then SIGKILL if it has not exited within 2 s.
fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn slurm_conf(dir: &Path, ctld_port: u16, slurmd_port: u16) -> String {
    let d = dir.display();
    let user = whoami();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "ClusterName=pipetest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/socket
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={d}/log/jobcomp.txt
MailProg=/bin/true
MinJobAge=3600
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"
    )
}

/// Two distinct free ports (both listeners are held until both are known).
fn free_ports() -> [u16; 2] {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    [a.local_addr().unwrap().port(), b.local_addr().unwrap().port()]
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The daemons are in /usr/sbin, which is not always on PATH.
fn find(exe: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path.split(':').chain(["/usr/sbin", "/usr/bin", "/sbin"]).map(|d| Path::new(d).join(exe)).find(|p| p.is_file());
    found
}

fn wait_for(mut ready: impl FnMut() -> bool, limit: Duration, explain: impl Fn() -> String) {
    let started = Instant::now();
    while !ready() {
        if started.elapsed() > limit {
            panic!("{}", explain());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
