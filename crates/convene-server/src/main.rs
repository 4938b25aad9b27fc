use std::process::ExitCode;

use convene_server::config::{AuditCommand, Command, Config, ExportFormat};
use convene_server::config_file::{self, ParseError};
use convene_storage::{audit, checkpoint, Storage};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match config_file::parse_with_file(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ParseError::Clap(e)) if !e.use_stderr() => e.exit(),
        Err(ParseError::Clap(e)) => {
            eprint!("{}", config_file::error_text(&e));
            return ExitCode::from(2);
        }
        Err(ParseError::File(problems)) => {
            eprintln!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Audit(cmd)) => return audit_command(&cli.config, cmd),
        Some(Command::Backup { .. }) if cli.config.database.is_some() => {
            eprintln!(
                "convene: backup copies the SQLite database; with --database, back up \
                 PostgreSQL with its own tools (pg_dump; docs/operations.md)"
            );
            return ExitCode::FAILURE;
        }
        Some(Command::Backup { file }) => {
            return match convene_storage::Storage::backup(&cli.config.data_dir, &file) {
                Ok(r) => {
                    println!(
                        "{}: {} bytes, schema {}, {} meetings, {} audit rows (chain intact)",
                        file.display(),
                        r.bytes,
                        r.schema,
                        r.meetings,
                        r.audit_rows
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("convene: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Export(cmd)) => {
            use convene_server::config::ExportCommand;
            use convene_server::export::{command, Subject};
            return match cmd {
                ExportCommand::Meeting { id, format } => {
                    command(&cli.config, Subject::Meeting(id), format)
                }
                ExportCommand::Person {
                    name_or_email,
                    format,
                } => command(&cli.config, Subject::Person(name_or_email), format),
            };
        }
        Some(Command::Purge { dry_run, .. }) => {
            return convene_server::retention::command(&cli.config, dry_run)
        }
        Some(Command::CheckConfig { file, policy }) => {
            let problems = config_file::check(&file, policy.as_deref());
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                println!("{}: no problems found", file.display());
                return ExitCode::SUCCESS;
            }
            return ExitCode::FAILURE;
        }
        None => {}
    }
    let config = cli.config;
    convene_server::logging::init(&config.log, config.log_format);
    let config_deadline = config.shutdown_deadline;
    let server = match convene_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("convene: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Tests and scripts read this line to find the server.
    println!("Convene is running at {}/", server.url);
    stop_signal().await;
    let deadline = std::time::Duration::from_secs(config_deadline);
    server.drain_and_shutdown(deadline).await;
    ExitCode::SUCCESS
}

/// Wait for Ctrl-C (SIGINT) or SIGTERM (systemd, `kill`), which stop the
/// server gracefully: open requests finish, the audit log gets its last
/// checkpoint. SIGHUP reloads the TLS certificate (tls.rs listens for it too)
/// and never stops the server, with or without TLS: `systemctl reload` must
/// not end every meeting.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => {
                    tracing::info!("SIGTERM: stopping");
                    return;
                }
                _ = hangup.recv() => tracing::info!("SIGHUP: the TLS certificate, if any, is reloaded; nothing else"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn audit_command(config: &Config, cmd: AuditCommand) -> ExitCode {
    let storage = match config.open_storage() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("convene: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cmd {
        AuditCommand::Export { meeting, format } => {
            let out = storage
                .audit_records(meeting.as_deref())
                .and_then(|records| match format {
                    ExportFormat::Jsonl => Ok(audit::to_jsonl(&records)),
                    ExportFormat::Csv => audit::to_csv(&records),
                });
            match out {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("convene: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::Verify => verify(config, &storage),
    }
}

/// Check the chain and compare it with the checkpoints: exit 0 if nothing
/// breaks it (warnings may still be printed), 2 if something does.
fn verify(config: &Config, storage: &Storage) -> ExitCode {
    let key = match config.audit_key() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("convene: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = config.audit_checkpoints_path();
    let (checkpoints, unreadable) = match checkpoint::read_from(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("convene: audit checkpoints {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let report = match storage.verify_audit_against(&checkpoints, key.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("convene: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &report.chain {
        Ok(head) => println!(
            "hash chain intact: {} rows, last hash {}",
            head.rows, head.hash
        ),
        Err(broken) => eprintln!("audit log BROKEN: {broken}"),
    }
    println!(
        "checkpoints: {} read from {}, {} verified with {}",
        report.compared,
        path.display(),
        report.verified,
        key.as_ref()
            .map_or("no key".to_string(), |k| format!("key {}", k.id())),
    );
    if let Some(newest) = &report.newest {
        println!(
            "newest matching checkpoint: {} rows at {} ms, head {}",
            newest.rows, newest.at, newest.head
        );
    }
    for problem in &report.problems {
        eprintln!("audit log BROKEN: {problem}");
    }
    for (line, e) in &unreadable {
        println!(
            "warning: line {line} of {} is not a checkpoint: {e}",
            path.display()
        );
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    if report.is_intact() {
        println!("audit log intact");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
