//! The network namespace of a test run.
//!
//! Everything a run starts (control plane, emulator, moto, MinIO, containerd, the kubelet, the
//! node's bridge and the pods' veths) lives in a network namespace the run creates itself, with
//! only its own loopback up: nothing is added to the machine's namespace, no traffic can reach an
//! address outside, and the kubelet cannot see (or pick) the machine's interfaces.
//!
//! A program enters one by running itself again under `unshare --net` ([`reexec_inside`]); the
//! outer process records its own namespace in [`OUTER_VARIABLE`], so the inner one can tell that
//! it really is somewhere else ([`inside`]). A node refuses to start anywhere else ([`require`]).

use std::path::Path;
use std::process::Command;

use crate::Error;

/// The network namespace of the process that started the run (`net:[<inode>]`).
pub const OUTER_VARIABLE: &str = "PODCREDS_TESTENV_OUTER_NETNS";

/// Brings loopback up in the fresh namespace, then becomes the program.
const ENTER_SCRIPT: &str = r#"ip link set lo up && exec "$0" "$@""#;

fn namespace_of(pid: &str) -> Result<String, Error> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net"))?;
    Ok(link.to_string_lossy().into_owned())
}

/// This process's network namespace, as `net:[<inode>]`.
pub fn current() -> Result<String, Error> {
    namespace_of("self")
}

/// Whether a namespace entered by [`reexec_inside`] (or [`command`]) is this process's: the
/// outer one is recorded and this one differs from it and from the machine's (pid 1's).
pub fn inside() -> bool {
    let Ok(here) = current() else {
        return false;
    };
    let outer = std::env::var(OUTER_VARIABLE).ok();
    let machine = namespace_of("1").ok();
    decide_inside(&here, outer.as_deref(), machine.as_deref())
}

/// The pure decision behind [`inside`].
fn decide_inside(here: &str, outer: Option<&str>, machine: Option<&str>) -> bool {
    match outer {
        Some(outer) => outer != here && machine != Some(here),
        None => false,
    }
}

/// Fails unless this process runs in a namespace of its run: `what` is what needs it.
pub fn require(what: &str) -> Result<(), Error> {
    if inside() {
        return Ok(());
    }
    Err(Error::Namespace(format!(
        "{what} must run in a network namespace created by its run (so nothing is added to this \
         machine's network): run it through `cargo xtask test` or `cargo test --test e2e` (both \
         enter one), or call podcreds_testenv::netns::reexec_inside first"
    )))
}

/// `program args` in a new network namespace with loopback up (needs root: `unshare --net`).
pub fn command(program: &Path, args: &[String]) -> Result<Command, Error> {
    if !is_root() {
        return Err(Error::Namespace(
            "a run of its own network namespace needs root (`unshare --net`; the node also \
             needs it for containerd and the kubelet)"
                .into(),
        ));
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", "sh", "-c", ENTER_SCRIPT])
        .arg(program)
        .args(args)
        .env(OUTER_VARIABLE, current()?);
    Ok(cmd)
}

/// Unless already [`inside`] one, runs this program again (same arguments) in a new network
/// namespace and exits with its status; returns only in the namespace.
pub fn reexec_inside() -> Result<(), Error> {
    if inside() {
        return Ok(());
    }
    let program = std::env::current_exe()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = command(&program, &args)?
        .status()
        .map_err(|e| Error::MissingTool(format!("cannot run unshare (util-linux): {e}")))?;
    std::process::exit(exit_code(status));
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Interface names in this namespace (`ip -o link`).
pub fn links() -> Result<Vec<String>, Error> {
    let output = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .map_err(|e| Error::MissingTool(format!("cannot run ip (iproute2): {e}")))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::decide_inside;

    #[test]
    fn only_a_namespace_other_than_the_outer_and_the_machines_counts() {
        let machine = Some("net:[1]");
        assert!(decide_inside("net:[2]", Some("net:[1]"), machine));
        assert!(!decide_inside("net:[1]", Some("net:[1]"), machine));
        // Not entered by a run: no record of where it came from.
        assert!(!decide_inside("net:[2]", None, machine));
        // A forged record does not make the machine's namespace a run's.
        assert!(!decide_inside("net:[1]", Some("net:[9]"), machine));
        // Started from inside another namespace, still a new one.
        assert!(decide_inside("net:[3]", Some("net:[2]"), machine));
    }
}
