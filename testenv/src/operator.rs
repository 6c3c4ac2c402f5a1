//! The podcreds operator as a child process, run exactly as in production (the real binary, a
//! real client, a kubeconfig): one way to start, probe, restart and read it for the end-to-end
//! suite, the benchmark and the demo.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Error, Process, free_port, loopback};

/// How to start an operator: `<wrapper...> <binary> run --admin-address=<free port> <args...>`
/// with `KUBECONFIG` set.
#[derive(Clone, Debug)]
pub struct Launch {
    binary: PathBuf,
    kubeconfig: PathBuf,
    log_parent: PathBuf,
    args: Vec<String>,
    wrapper: Vec<String>,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
}

impl Launch {
    /// The operator `binary` talking to the cluster of `kubeconfig`; its log goes to
    /// `<log_parent>/operator-<admin port>/podcreds.log`.
    pub fn new(binary: &Path, kubeconfig: &Path, log_parent: &Path) -> Self {
        Self {
            binary: binary.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            log_parent: log_parent.to_path_buf(),
            args: Vec::new(),
            wrapper: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(30),
        }
    }

    /// Adds environment variables (after `KUBECONFIG` and `RUST_BACKTRACE=1`, so they win).
    pub fn envs(mut self, vars: Vec<(String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    /// Adds arguments after `run --admin-address=...`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the operator under `command` (a profiler: `heaptrack`, `perf record -g --`); empty
    /// runs it directly.
    pub fn wrapper(mut self, command: &[String]) -> Self {
        self.wrapper = command.to_vec();
        self
    }

    /// How long to wait for `/readyz` (30 s unless set).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

/// A running operator; killed when dropped.
pub struct Operator {
    pub process: Process,
    /// `127.0.0.1:<port>`, serving `/readyz` and `/metrics`.
    pub admin: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    ready_timeout: Duration,
}

impl Operator {
    /// Starts the operator and waits until it is ready.
    pub async fn start(launch: Launch) -> Result<Self, Error> {
        let mut operator = Self::spawn(launch)?;
        operator.wait_ready().await?;
        Ok(operator)
    }

    /// Starts the operator without waiting for it (see [`Operator::wait_ready`]).
    pub fn spawn(launch: Launch) -> Result<Self, Error> {
        let port = free_port()?;
        let admin = format!("127.0.0.1:{port}");
        let log_dir = launch.log_parent.join(format!("operator-{port}"));
        std::fs::create_dir_all(&log_dir)?;
        let mut command = launch.wrapper;
        command.push(launch.binary.to_string_lossy().into_owned());
        let program = PathBuf::from(command.remove(0));
        command.extend(["run".to_string(), format!("--admin-address={admin}")]);
        command.extend(launch.args);
        let mut env = vec![
            (
                "KUBECONFIG".to_string(),
                launch.kubeconfig.to_string_lossy().into_owned(),
            ),
            ("RUST_BACKTRACE".to_string(), "1".to_string()),
        ];
        env.extend(launch.env);
        let process = Process::spawn("podcreds", &program, &command, &env, &log_dir)?;
        Ok(Self {
            process,
            admin,
            program,
            args: command,
            env,
            log_dir,
            ready_timeout: launch.ready_timeout,
        })
    }

    /// Waits until `/readyz` answers 200; fails with the end of the log if the process exits
    /// first or the launch's timeout passes.
    pub async fn wait_ready(&mut self) -> Result<(), Error> {
        loopback::wait_until_serving(
            &mut self.process,
            &self.admin,
            "/readyz",
            self.ready_timeout,
            |code| code == 200,
        )
        .await
    }

    /// SIGTERM, wait for the exit (at once if it has exited already), start again with the same
    /// arguments, admin address and log file, and wait until ready.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.process.terminate()?;
        self.process = Process::spawn(
            "podcreds",
            &self.program,
            &self.args,
            &self.env,
            &self.log_dir,
        )?;
        self.wait_ready().await
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The whole log so far (every run of this operator).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Result<String, Error> {
        match loopback::get(&self.admin, "/metrics").await? {
            (200, body) => Ok(body),
            (code, _) => Err(Error::Http {
                url: format!("http://{}/metrics", self.admin),
                reason: format!("status {code}"),
            }),
        }
    }
}
