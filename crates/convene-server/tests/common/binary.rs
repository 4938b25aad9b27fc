//! The real `convene` binary, for tests of what an operator runs: a server
//! process (started, found by the line it prints, killed if the test fails),
//! and the subcommands. No `CONVENE_*` variable of the caller's shell reaches
//! it: every setting a test relies on is on its command line.

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// The binary, with the caller's `CONVENE_*` variables removed.
pub fn convene() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convene"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONVENE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// `convene --data-dir DATA ARGS…`, run to its end.
pub fn run(data: &Path, args: &[&str]) -> Output {
    convene()
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// Standard output and error together, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `convene audit verify` passes on DATA; what it printed.
pub fn audit_verifies(data: &Path) -> String {
    let out = run(data, &["audit", "verify"]);
    let said = text(&out);
    assert!(out.status.success(), "audit verify: {said}");
    said
}

/// A running server process. Dropped, it is killed (so none outlives a
/// failed test); [`Process::log`] reads the rest of its output.
pub struct Process {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    lines: Option<Lines<BufReader<ChildStdout>>>,
}

impl Process {
    /// `host:port` of the web listener.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    /// Keep reading its output on a thread (so it never blocks on a full
    /// pipe); the thread returns the lines once the process has ended.
    pub fn log(&mut self) -> std::thread::JoinHandle<Vec<String>> {
        let lines = self.lines.take().expect("the log is read once");
        std::thread::spawn(move || lines.map_while(Result::ok).collect())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `convene ARGS…` (a server: give it `--listen` and `--data-dir`) and
/// wait until it says where it runs.
pub fn start(args: &[&str]) -> Process {
    start_command(convene().args(args))
}

/// As [`start`], for a command the caller has set up further.
pub fn start_command(cmd: &mut Command) -> Process {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .unwrap();
        if let Some(rest) = line.split("Convene is running at ").nth(1) {
            break rest.trim_end_matches('/').to_string();
        }
    };
    Process {
        child,
        url,
        lines: Some(lines),
    }
}
